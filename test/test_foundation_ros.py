"""The foundation: package metadata, generated interfaces, and real DDS across two processes."""
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run scripts/setup.sh")


def test_package_xml_validates():
    from catkin_pkg.package import parse_package

    package = parse_package(str(ROOT / "package.xml"))
    package.validate()  # raises InvalidPackage on errors
    assert package.name == "abtrack_ros"
    assert package.get_build_type() == "ament_cmake"
    names = {d.name for d in package.build_depends + package.exec_depends + package.buildtool_depends}
    for dep in ("rclpy", "sensor_msgs", "std_srvs", "vision_msgs", "diagnostic_msgs",
                "rosidl_default_generators", "rosidl_default_runtime", "cv_bridge"):
        assert dep in names, dep


def test_vision_msgs_field_layout_is_4x():
    from vision_msgs.msg import BoundingBox2D, Detection2D, ObjectHypothesis, ObjectHypothesisWithPose, Pose2D

    assert Detection2D.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
        "bbox": "vision_msgs/BoundingBox2D",
        "id": "string",
    }
    assert BoundingBox2D.get_fields_and_field_types() == {
        "center": "vision_msgs/Pose2D", "size_x": "double", "size_y": "double"}
    assert Pose2D.get_fields_and_field_types() == {"position": "vision_msgs/Point2D", "theta": "double"}
    assert ObjectHypothesis.get_fields_and_field_types() == {"class_id": "string", "score": "double"}
    assert ObjectHypothesisWithPose.get_fields_and_field_types() == {
        "hypothesis": "vision_msgs/ObjectHypothesis", "pose": "geometry_msgs/PoseWithCovariance"}


def test_package_interfaces_import():
    from abtrack_ros.msg import TrackerStatus
    from abtrack_ros.srv import InitTarget

    status = TrackerStatus(state=TrackerStatus.STATE_LOST, executed_blocks=[True, False])
    assert status.state == 2 and list(status.executed_blocks) == [True, False]
    request = InitTarget.Request(x=1.0, y=2.0, width=3.0, height=4.0)
    assert request.stamp.sec == 0 and InitTarget.Response().success is False


PEER = textwrap.dedent(
    """
    import sys, time
    import rclpy
    from rclpy.node import Node
    from abtrack_ros.msg import TrackerStatus
    from abtrack_ros.srv import InitTarget
    from vision_msgs.msg import Detection2D, ObjectHypothesisWithPose

    rclpy.init()
    node = Node("foundation_peer")
    det_pub = node.create_publisher(Detection2D, "foundation/detection", 10)
    status_pub = node.create_publisher(TrackerStatus, "foundation/status", 10)

    def handle(request, response):
        response.success = request.width > 0 and request.height > 0
        response.message = f"area {request.width * request.height:.1f}"
        response.state = TrackerStatus.STATE_TRACKING if response.success else TrackerStatus.STATE_IDLE
        response.image_stamp = request.stamp
        return response

    node.create_service(InitTarget, "foundation/init_target", handle)
    count = 0

    def publish():
        global count
        count += 1
        det = Detection2D(id=f"det{count}")
        det.header.frame_id = "camera"
        det.header.stamp.sec = count
        det.bbox.center.position.x = 10.0 * count
        det.bbox.size_x, det.bbox.size_y = 4.0, 6.0
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = "target", 0.75
        det.results.append(hyp)
        det_pub.publish(det)
        status_pub.publish(TrackerStatus(state=TrackerStatus.STATE_TRACKING, blocks_executed=7, blocks_total=12))

    node.create_timer(0.05, publish)
    deadline = time.monotonic() + float(sys.argv[1])
    while rclpy.ok() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    rclpy.shutdown()
    """
)


def test_pub_sub_and_service_across_processes():
    from abtrack_ros.msg import TrackerStatus
    from abtrack_ros.srv import InitTarget
    from rclpy.node import Node
    from vision_msgs.msg import Detection2D

    peer = subprocess.Popen([sys.executable, "-c", PEER, "60"])
    rclpy.init()
    try:
        node = Node("foundation_test")
        detections, statuses = [], []
        node.create_subscription(Detection2D, "foundation/detection", detections.append, 10)
        node.create_subscription(TrackerStatus, "foundation/status", statuses.append, 10)
        client = node.create_client(InitTarget, "foundation/init_target")
        deadline = time.monotonic() + 45
        while (len(detections) < 3 or not statuses) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert len(detections) >= 3, "no Detection2D arrived over DDS from the other process"
        det = detections[-1]
        assert det.header.frame_id == "camera" and det.id == f"det{det.header.stamp.sec}"
        assert det.bbox.center.position.x == 10.0 * det.header.stamp.sec
        assert det.results[0].hypothesis.class_id == "target" and det.results[0].hypothesis.score == 0.75
        assert statuses[-1].blocks_executed == 7 and statuses[-1].blocks_total == 12

        assert client.wait_for_service(timeout_sec=30)
        request = InitTarget.Request(width=5.0, height=2.0)
        request.stamp.sec = 42
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=30)
        response = future.result()
        assert response is not None and response.success
        assert response.message == "area 10.0" and response.image_stamp.sec == 42
        assert response.state == TrackerStatus.STATE_TRACKING

        future = client.call_async(InitTarget.Request(width=0.0, height=2.0))
        rclpy.spin_until_future_complete(node, future, timeout_sec=30)
        assert future.result().success is False
        node.destroy_node()
    finally:
        rclpy.shutdown()
        peer.kill()
        peer.wait()


def test_package_imports_whole_from_any_directory(tmp_path):
    """The repository's abtrack_ros (not the rosidl-generated stub in the colcon install) is the
    package, and its msg/srv come from the install: both from a directory outside the repo."""
    code = ("import abtrack_ros, abtrack_ros.msg, abtrack_ros.srv, abtrack_ros.cli;"
            "print(abtrack_ros.__version__, abtrack_ros.cli.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    version, cli_file = out.stdout.split()
    assert version and Path(cli_file).resolve() == ROOT / "abtrack_ros" / "cli.py"
