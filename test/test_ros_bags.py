"""Recorded data: rosbag2 files (MCAP and sqlite3) written here with the `rosbags` library, read by
the bag source, tracked offline by `abtrack track --bag` (detections read back from the MCAP it
writes) and replayed into the node by `abtrack demo --bag` over real DDS."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("abtrack_ros.msg")
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from abtrack_ros.cli import main as cli_main  # noqa: E402
from abtrack_ros.config import ABTrackConfig, ModelConfig  # noqa: E402
from abtrack_ros.model import build_model, save_checkpoint  # noqa: E402
from abtrack_ros.ros.bag_camera import ReplayClock  # noqa: E402
from abtrack_ros.ros.bags import (  # noqa: E402
    DETECTION_TOPIC, BagFrame, bag_source, decoded, open_image_topic, read_images,
)
from abtrack_ros.ros.client import BackgroundSpinner, TrackerClient  # noqa: E402
from abtrack_ros.ros.frames import stamp_to_ns  # noqa: E402

FRAMES = 6
SIZE = (96, 128)  # rows, columns
BOX = (40, 30, 30, 30)  # x, y, w, h of the target in the first frame
# Header stamps far in the past (2001) and a recorder that logged each image 5 ms after its stamp:
# what the tools must keep are the header stamps, not the log times and not the time of the run.
STAMPS_NS = [1_000_000_000 * 1_000_000_000 + i * 100_000_000 for i in range(FRAMES)]
LOG_DELAY_NS = 5_000_000
IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
TEXT_TOPIC = "/note"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
DEMO_NS = "/abtrack_demo"


def frame(index: int) -> np.ndarray:
    image = np.full((*SIZE, 3), 30, np.uint8)
    image[30:60, 40 + 2 * index:70 + 2 * index] = (250, 200, 0)
    return image


def write_bag(path: Path, storage: str) -> Path:
    """A bag with the same frames raw and JPEG-compressed, and a text topic."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = store.types
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage]) as writer:
        raw = writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=store)
        jpeg = writer.add_connection(COMPRESSED_TOPIC, "sensor_msgs/msg/CompressedImage", typestore=store)
        text = writer.add_connection(TEXT_TOPIC, "std_msgs/msg/String", typestore=store)
        for i, stamp in enumerate(STAMPS_NS):
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
                frame_id="camera")
            image = types["sensor_msgs/msg/Image"](header=header, height=SIZE[0], width=SIZE[1], encoding="rgb8",
                                                   is_bigendian=0, step=SIZE[1] * 3, data=frame(i).reshape(-1))
            encoded = np.frombuffer(cv2.imencode(".jpg", cv2.cvtColor(frame(i), cv2.COLOR_RGB2BGR))[1], np.uint8)
            compressed = types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=encoded)
            log_ns = stamp + LOG_DELAY_NS
            writer.write(raw, log_ns, store.serialize_cdr(image, "sensor_msgs/msg/Image"))
            writer.write(jpeg, log_ns, store.serialize_cdr(compressed, "sensor_msgs/msg/CompressedImage"))
            writer.write(text, log_ns, store.serialize_cdr(types["std_msgs/msg/String"](data=f"#{i}"),
                                                           "std_msgs/msg/String"))
    return path


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bags")
    return {storage: write_bag(folder / storage, storage) for storage in STORAGES}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "small.pt"
    cfg = ABTrackConfig(model=ModelConfig(template_size=32, search_size=64, head_channels=32, bdm=True))
    save_checkpoint(path, build_model(cfg.model), cfg)
    return path


# ---------------------------------------------------------------- reading
@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("topic", [IMAGE_TOPIC, COMPRESSED_TOPIC])
def test_bag_source_yields_the_frames_with_their_own_stamps(bags, storage, topic):
    recording = open_image_topic(bags[storage], topic)
    assert recording.count == FRAMES and recording.compressed == (topic == COMPRESSED_TOPIC)
    assert recording.rate_hz == pytest.approx(10.0, rel=0.01)
    images = list(read_images(recording))
    assert [i.stamp_ns for i in images] == STAMPS_NS
    assert [i.log_ns for i in images] == [s + LOG_DELAY_NS for s in STAMPS_NS]
    assert all(i.message.header.frame_id == "camera" for i in images)
    for index, (rgb, _) in enumerate(decoded(iter(images))):
        tolerance = 0 if topic == IMAGE_TOPIC else 12  # JPEG
        assert np.abs(rgb.astype(int) - frame(index)).mean() <= tolerance
    source = bag_source(bags[storage], topic, np.asarray(BOX, float), limit=4)
    items = list(source.frames)
    assert [item.image.stamp_ns for item in items] == STAMPS_NS[:4]
    assert all(isinstance(item, BagFrame) and item.truth_xywh is None for item in items)


def test_the_only_image_topic_is_the_default(tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    with Writer(tmp_path / "one", version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/front/image", "sensor_msgs/msg/Image", typestore=store)
    assert open_image_topic(tmp_path / "one", None).topic == "/front/image"


# ---------------------------------------------------------------- abtrack track --bag
@pytest.mark.parametrize("storage, topic", [("mcap", IMAGE_TOPIC), ("sqlite3", COMPRESSED_TOPIC)])
def test_track_bag_writes_one_detection_per_image_with_its_header(bags, storage, topic, tmp_path, checkpoint):
    out = tmp_path / "out"
    argv = ["track", "--bag", str(bags[storage]), "--topic", topic, "--box", ",".join(map(str, BOX)),
            "--checkpoint", str(checkpoint), "--threads", "1", "--out", str(out)]
    assert cli_main(argv) == 0
    assert np.loadtxt(out / "boxes.txt", delimiter=",").shape == (FRAMES, 4)
    assert list((out / "detections").glob("*.mcap"))  # an MCAP rosbag2, whatever the input's storage
    with AnyReader([out / "detections"]) as reader:  # types from the bag's own schema
        (connection,) = reader.connections
        assert connection.topic == DETECTION_TOPIC and connection.msgtype == "vision_msgs/msg/Detection2D"
        assert connection.digest == installed_detection_hash()
        records = [(log_ns, reader.deserialize(raw, connection.msgtype))
                   for connection, log_ns, raw in reader.messages()]
    stamps = [d.header.stamp.sec * 10**9 + d.header.stamp.nanosec for _, d in records]
    assert stamps == STAMPS_NS
    assert [log_ns for log_ns, _ in records] == [s + LOG_DELAY_NS for s in STAMPS_NS]
    detections = [d for _, d in records]
    assert {d.header.frame_id for d in detections} == {"camera"} and len({d.id for d in detections}) == 1
    first = detections[0]
    x, y, w, h = BOX
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (x + w / 2, y + h / 2)
    assert (first.bbox.size_x, first.bbox.size_y) == (w, h)
    assert first.results[0].hypothesis.class_id == "target"  # the init box
    for d in detections:  # random weights: LOST candidates are flagged, not left out
        (result,) = d.results
        assert result.hypothesis.class_id in ("target", "target_lost") and 0.0 <= result.hypothesis.score <= 1.0
        assert d.bbox.size_x > 0 and d.bbox.size_y > 0


def installed_detection_hash() -> str:
    """The RIHS01 type hash rosidl generated for the installed Detection2D."""
    from ament_index_python.packages import get_package_share_directory

    description = Path(get_package_share_directory("vision_msgs")) / "msg" / "Detection2D.json"
    hashes = json.loads(description.read_text())["type_hashes"]
    return next(h["hash_string"] for h in hashes if h["type_name"] == "vision_msgs/msg/Detection2D")


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("bag, topic, expected", [
    ("missing", IMAGE_TOPIC, "rosbag not found"),
    ("not_a_bag", IMAGE_TOPIC, "cannot read rosbag"),
    ("mcap", "/nope", f"topic /nope is not in .* {IMAGE_TOPIC} \\(sensor_msgs/msg/Image\\)"),
    ("mcap", TEXT_TOPIC, f"topic {TEXT_TOPIC} .* has type std_msgs/msg/String, not sensor_msgs/msg/Image or"),
    ("mcap", None, "has 2 image topics, choose one with --topic"),
])
def test_bad_bag_inputs_give_clear_errors(bags, tmp_path, capsys, bag, topic, expected):
    import re

    (tmp_path / "not_a_bag").mkdir()
    path = bags.get(bag, tmp_path / bag)
    topic_args = ["--topic", topic] if topic else []
    assert cli_main(["track", "--bag", str(path), *topic_args, "--box", "1,2,3,4", "--out", str(tmp_path / "o")]) == 2
    assert re.search(expected, capsys.readouterr().err)
    assert cli_main(["demo", "--bag", str(path), *topic_args, "--box", "1,2,3,4", "--out", str(tmp_path / "d")]) == 1
    assert re.search(expected, capsys.readouterr().out)


@pytest.mark.parametrize("argv", [
    ["demo", "--bag", "x"],  # needs --box
    ["demo", "--bag", "x", "--box", "1,2,3,4", "--rate", "10"],
    ["demo", "--rate-scale", "2"],
    ["demo", "--topic", "/camera/image_raw"],
])
def test_demo_bag_option_errors(argv, capsys):
    assert cli_main(argv) == 2
    assert "abtrack demo:" in capsys.readouterr().out


# ---------------------------------------------------------------- replay pacing
def test_replay_clock_keeps_the_recorded_gaps_and_never_bursts_or_goes_back():
    ms = 1_000_000
    clock = ReplayClock(start_ns=0)
    clock.hold(1000 * ms)  # the init frame
    assert clock.now_ns(5_000 * ms) == 1000 * ms  # held
    clock.run(wall_ns=0, scale=2.0)
    assert clock.next_frame(1100 * ms, wall_ns=0) == 50 * ms  # 100 ms recorded at twice the pace
    assert clock.now_ns(80 * ms) == 1100 * ms  # runs up to the next frame, not past it
    # that frame went out 200 ms late: the one after is due already, so the schedule restarts
    assert clock.next_frame(1200 * ms, wall_ns=250 * ms) == 50 * ms
    assert clock.now_ns(250 * ms) == 1100 * ms  # never backwards
    assert clock.now_ns(275 * ms) == 1150 * ms
    clock.finish()
    assert clock.now_ns(400 * ms) == 1400 * ms  # runs on after the last frame


# ---------------------------------------------------------------- abtrack demo --bag over DDS
def test_demo_replays_a_bag_into_the_node_with_its_stamps(bags, tmp_path, checkpoint, monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    listener = TrackerClient(DEMO_NS, name="bag_test_listener")
    spinner = BackgroundSpinner(listener)
    out = tmp_path / "demo"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "abtrack_ros.cli", "demo", "--bag", str(bags["mcap"]), "--topic", IMAGE_TOPIC,
             "--box", ",".join(map(str, BOX)), "--checkpoint", str(checkpoint), "--device", "cpu", "--threads", "1",
             # a tenth of the recorded pace (6 s instead of 0.6 s): this listener discovers the
             # demo's node only after its start, and at full pace it sometimes heard no status
             "--rate-scale", "0.1", "--out", str(out), "--quiet"],
            capture_output=True, text=True, timeout=180, env=dict(os.environ))
        statuses = [s.msg for s in listener.snapshot()[1]]
    finally:
        spinner.close()
        rclpy.try_shutdown()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_published"] == FRAMES and summary["frames_processed"] > 0
    assert summary["mean_iou"] is None and "n/a (no ground truth)" in proc.stdout
    assert summary["source"] == f"bag:{bags['mcap']}:{IMAGE_TOPIC}"
    stamps = [stamp_to_ns(s.header.stamp) for s in statuses]
    assert stamps and set(stamps) <= set(STAMPS_NS) and STAMPS_NS[-1] in stamps
    tracked = [s for s in statuses if s.state_name != "IDLE"]
    assert tracked and all(s.header.frame_id == "camera" for s in tracked)
    # the node ran on the recording's /clock: image ages are those of the replay, not of 2001
    assert all(0 <= s.image_age_ms < 10_000 for s in tracked)
