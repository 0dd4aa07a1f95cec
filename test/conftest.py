"""Shared test set-up: keep every DDS participant of the suite on loopback, on its own domain."""
import os
import random


def pytest_configure(config):
    # Child processes (nodes started by tests) inherit these.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random().randint(1, 100)))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
