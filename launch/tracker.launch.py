"""Launch the ABTrack tracker node (`ros2 launch abtrack_ros tracker.launch.py`).

Examples:
  ros2 launch abtrack_ros tracker.launch.py image_topic:=/camera/image_raw
  ros2 launch abtrack_ros tracker.launch.py namespace:=front image_topic:=/front/image_raw device:=cuda
  ros2 launch abtrack_ros tracker.launch.py lifecycle:=true   # managed node, driven to active

The node applies the package's Fast DDS profile for large images itself (unless
FASTDDS_DEFAULT_PROFILES_FILE is set); the camera driver's process needs it too (docs/ros.md).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition, UnlessCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition


def managed_tracker(parameters, remappings, condition) -> list:
    """The lifecycle node, configured at launch and activated once it is inactive (model loaded)."""
    node = LifecycleNode(package="abtrack_ros", executable="tracker_lifecycle_node", name="tracker_node",
                         namespace=LaunchConfiguration("namespace"), output="screen",
                         parameters=parameters, remappings=remappings, condition=condition)
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE), condition=condition)
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))],
    ), condition=condition)
    return [node, configure, activate]


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
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="Start the managed (lifecycle) node and drive it to active: "
                                          "configure loads the model, activate opens the topics."),
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
    parameters = [LaunchConfiguration("params_file"), overrides]
    lifecycle = LaunchConfiguration("lifecycle")
    entities = []
    for remap, compressed in ((raw_remap, "false"), (compressed_remap, "true")):
        # One of the four (plain/managed x raw/compressed) runs: both conditions must hold.
        plain = UnlessCondition(PythonExpression([
            "'", lifecycle, "'.lower() == 'true' or '", LaunchConfiguration("use_compressed"),
            f"'.lower() != '{compressed}'"]))
        managed = IfCondition(PythonExpression([
            "'", lifecycle, "'.lower() == 'true' and '", LaunchConfiguration("use_compressed"),
            f"'.lower() == '{compressed}'"]))
        entities.append(Node(package="abtrack_ros", executable="tracker_node", name="tracker_node",
                             namespace=LaunchConfiguration("namespace"), output="screen",
                             parameters=parameters, remappings=remap, condition=plain))
        entities += managed_tracker(parameters, remap, managed)
    return LaunchDescription(arguments + entities)
