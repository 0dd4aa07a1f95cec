#!/usr/bin/env bash
# Pack the generator's photographs and sample videos for the device machine, which cannot reach
# any package registry: photos downscaled to the generator's working size (MAX_WORKING_SIDE, so
# little is lost) as JPEG, videos copied. Writes .device_pack/ (git-ignored; carry it in `run`).
#   scripts/pack_device_images.sh [PACK_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACK="${1:-$ROOT/.device_pack}"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
python - "$PACK" <<'PY'
import shutil, sys
from pathlib import Path
import cv2
from abtrack_ros.data.image_sources import (
    MIN_FILE_BYTES, find_real_images, find_sample_videos, location_free_name, to_working_size,
)

pack = Path(sys.argv[1])
if pack.exists():
    shutil.rmtree(pack)
(pack / "photos").mkdir(parents=True)
(pack / "videos").mkdir()
photos = find_real_images()
if not photos:
    sys.exit("no photographs found: run scripts/setup.sh first (it installs the image packages)")
for index, path in enumerate(photos):
    image = to_working_size(cv2.imread(str(path), cv2.IMREAD_COLOR))
    # The index keeps the generator's photo order (location-free names) in the pack.
    name = f"{index:03d}_" + location_free_name(path).replace("/", "_").rsplit(".", 1)[0] + ".jpg"
    target = pack / "photos" / name
    cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if target.stat().st_size < MIN_FILE_BYTES:  # a smooth wallpaper: keep it findable, lossless
        target.unlink()
        cv2.imwrite(str(target.with_suffix(".png")), image)
videos = find_sample_videos()
for path in videos:
    shutil.copy(path, pack / "videos" / path.name)
size = sum(p.stat().st_size for p in pack.rglob("*") if p.is_file())
print(f"packed {len(photos)} photos and {len(videos)} videos into {pack} ({size / 2**20:.1f} MiB)")
PY
