"""The DDS settings camera images need: the package's Fast DDS profile with a large shared-memory
segment (abtrack_ros/resources/fastdds_large_data.xml; docs/ros.md, "Large images over DDS").

Fast DDS reads the profile when a process creates its first participant (rclpy.init), so
`use_large_image_profile` must run before that, and in every process that publishes images.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

FASTDDS_PROFILE = Path(__file__).resolve().parents[1] / "resources" / "fastdds_large_data.xml"
# Fast DDS 2.x/3.x read the first name; the second is the older spelling some tools still set.
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def use_large_image_profile(env: MutableMapping[str, str] = os.environ) -> str:
    """Point Fast DDS at the package's profile unless the user chose one; returns the profile in
    force ("" when another middleware than Fast DDS is selected, which ignores it)."""
    for name in PROFILE_VARIABLES:
        if env.get(name):
            return env[name]
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return ""
    env[PROFILE_VARIABLES[0]] = str(FASTDDS_PROFILE)
    return str(FASTDDS_PROFILE)
