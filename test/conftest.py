"""Shared test set-up: keep every DDS participant of the suite on loopback, on its own domain, with
the package's Fast DDS profile for large images (what the demo and the launch file use)."""
import os
import random

from abtrack_ros.ros.dds import use_large_image_profile


def pytest_configure(config):
    # Child processes (nodes started by tests) inherit these.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random().randint(1, 100)))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    use_large_image_profile()
