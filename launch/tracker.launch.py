"""Launch the ABTrack tracker node (`ros2 launch abtrack_ros tracker.launch.py`).

Examples:
  ros2 launch abtrack_ros tracker.launch.py image_topic:=/camera/image_raw
  ros2 launch abtrack_ros tracker.launch.py namespace:=front image_topic:=/front/image_raw device:=cuda
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("abtrack_ros"), "config", "tracker.yaml")
    arguments = [
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Raw image topic (sensor_msgs/Image) the tracker reads; with "
                                          "use_compressed, its /compressed sibling is read instead."),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the node and its topics/services (one per camera)."),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file with the node's parameters."),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="Model checkpoint (.pt); empty = the package default model."),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N."),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="auto (fastest installed), torch, onnxruntime or tensorrt."),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use the /clock topic (rosbag replay) as ROS time."),
        DeclareLaunchArgument("use_compressed", default_value="false",
                              description="Subscribe to image_topic/compressed (CompressedImage)."),
    ]
    overrides = {
        "checkpoint": LaunchConfiguration("checkpoint"),
        "device": LaunchConfiguration("device"),
        "backend": LaunchConfiguration("backend"),
        "use_sim_time": PythonExpression(["'", LaunchConfiguration("use_sim_time"), "'.lower() == 'true'"]),
        "use_compressed": PythonExpression(["'", LaunchConfiguration("use_compressed"), "'.lower() == 'true'"]),
    }
    raw_remap = [("image", LaunchConfiguration("image_topic"))]
    compressed_remap = [("image/compressed", [LaunchConfiguration("image_topic"), "/compressed"])]
    nodes = [
        Node(package="abtrack_ros", executable="tracker_node", name="tracker_node",
             namespace=LaunchConfiguration("namespace"), output="screen",
             parameters=[LaunchConfiguration("params_file"), overrides],
             remappings=remap, condition=condition)
        for remap, condition in (
            (raw_remap, UnlessCondition(LaunchConfiguration("use_compressed"))),
            (compressed_remap, IfCondition(LaunchConfiguration("use_compressed"))),
        )
    ]
    return LaunchDescription(arguments + nodes)
