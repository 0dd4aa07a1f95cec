#!/usr/bin/env bash
# The main job: sets up if needed (scripts/setup.sh), then runs the demo of the ROS 2 tracker
# node following a target (camera replay -> node over DDS -> detections, summary, video).
# Extra arguments go to `abtrack demo`, e.g. scripts/demo.sh --video my.mp4 --box 10,20,50,40
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"
exec abtrack demo "$@"
