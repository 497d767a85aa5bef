"""colcon/ament_python glue for the deblur_edge ROS 2 package: installs the package marker, package.xml,
the launch file and a ``deblur`` executable (``ros2 run deblur_edge deblur``). The node's code is the
deblur-edge Python package itself (``deblur.robot.ros2_node``), installed with pip into the Python
that ROS uses; nothing is copied here."""
from glob import glob

from setuptools import setup

PACKAGE = "deblur_edge"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    license="Apache-2.0",
    description="DeblurGAN motion deblurring as a ROS 2 node (deblur-edge)",
    entry_points={"console_scripts": ["deblur = deblur.robot.ros2_node:main"]},
)
