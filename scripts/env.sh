# Source this file (bash): activates .venv and the colcon install of the interfaces.
# Made by scripts/setup.sh; on a ROS 2 machine use your workspace's install/setup.bash instead.
_abtrack_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$_abtrack_root/.venv/bin/activate"
# colcon's scripts read unset variables; relax nounset while sourcing them.
case $- in *u*) _abtrack_u=1; set +u ;; *) _abtrack_u=0 ;; esac
# shellcheck disable=SC1091
. "$_abtrack_root/.colcon/install/setup.bash"
[ "$_abtrack_u" = 1 ] && set -u
# The ROS wheels install their share/ (ament index, message types) under the venv itself.
case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$VIRTUAL_ENV" ;; esac
# The repository's abtrack_ros must come before the colcon install's (which rosidl generates with
# only msg/ and srv/ and an empty __init__); its __init__ then adds the install's msg/srv.
export PYTHONPATH="$_abtrack_root${PYTHONPATH:+:$PYTHONPATH}"
unset _abtrack_root _abtrack_u
