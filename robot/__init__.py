"""Robot pipelines: recorded bags (deblur-bag), a GStreamer element (deblur), a ROS 2 node (deblur-ros2)."""
