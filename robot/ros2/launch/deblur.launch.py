"""Launch the deblur node: ``ros2 launch deblur_edge deblur.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info``.

Publishes ``<namespace>/deblurred/image_raw`` and ``<namespace>/deblurred/camera_info``; every parameter of
the node is a launch argument (``ros2 launch deblur_edge deblur.launch.py --show-args``).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGS = {
    "image": ("image_raw", "the camera's sensor_msgs/Image topic"),
    "camera_info": ("camera_info", "the camera's sensor_msgs/CameraInfo topic (passed through unchanged)"),
    "namespace": ("", "namespace of the node and of its deblurred/... outputs"),
    "model": ("default", "a .onnx, OpenVINO .xml, TensorRT .engine or .pth file, or 'default' (the bundled model)"),
    "device": ("cpu", "cpu or cuda:N"),
    "threads": ("0", "CPU threads for the model (0: all this process may use)"),
    "tile": ("auto", "auto, 0 (never tile) or a tile side in px"),
    "input_qos": ("SENSOR_DATA", "SENSOR_DATA (best effort), DEFAULT (reliable) or SYSTEM_DEFAULT; depth 1"),
    "output_qos": ("DEFAULT", "SENSOR_DATA, DEFAULT (reliable) or SYSTEM_DEFAULT; depth 1"),
}
PARAMETERS = ("model", "device", "threads", "tile", "input_qos", "output_qos")


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGS.items()]
    node = Node(
        package="deblur_edge",
        executable="deblur",
        name="deblur",
        namespace=LaunchConfiguration("namespace"),
        parameters=[{name: LaunchConfiguration(name) for name in PARAMETERS}],
        remappings=[("image", LaunchConfiguration("image")), ("camera_info", LaunchConfiguration("camera_info"))],
        output="screen",
    )
    return LaunchDescription([*declared, node])
