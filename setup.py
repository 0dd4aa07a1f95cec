"""Plain-pip install of the Python library and the `abtrack` command (no ROS needed).

On a ROS 2 machine colcon builds this package with ament_cmake (CMakeLists.txt) instead; the
metadata lives in pyproject.toml.
"""
from setuptools import setup

setup()
