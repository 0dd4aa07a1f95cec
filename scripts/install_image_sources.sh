#!/usr/bin/env bash
# Real photographs and videos for the synthetic data generator (abtrack_ros.data.image_sources):
# OpenCV's documentation samples (photos, vtest.avi, Megamind.avi) and three wallpaper collections
# from Debian's packages. Nothing is committed to the repository; without these packages the
# generator falls back to procedural textures and records that in meta.json.
# Skipped (with a message) where apt-get is missing or we are not root: set ABTRACK_SKIP_APT=1 to
# skip on purpose.
set -euo pipefail
PACKAGES=(opencv-doc ukui-wallpapers mate-backgrounds lomiri-wallpapers)
say() { echo "[setup] $*"; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
    say "real-image packages: installed (${PACKAGES[*]})"
elif [ "${ABTRACK_SKIP_APT:-0}" = 1 ] || ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    say "real-image packages missing (${missing[*]}): not installing them (need root and apt-get);"
    say "  the synthetic generator will use procedural textures instead"
else
    say "installing real-image packages from Debian: ${missing[*]}"
    # Not fatal: without the photos the generator falls back to procedural textures.
    if ! { apt-get update -qq >/dev/null &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
        say "could not install ${missing[*]}: the synthetic generator will use procedural textures"
    fi
fi
