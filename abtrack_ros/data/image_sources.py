"""Real photographs already on the machine, used as backgrounds and object patches by the generator.

Nothing is downloaded: the images come from Debian packages (wallpapers, OpenCV's sample data)
and from sample data inside Python packages of the venv. docs/data.md lists the packages.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

IMAGE_DIRS_ENV = "ABTRACK_IMAGE_DIRS"
SYSTEM_IMAGE_DIRS = (
    Path("/usr/share/backgrounds"),
    Path("/usr/share/wallpapers"),
    Path("/usr/share/pixmaps"),
    Path("/usr/share/images/desktop-base"),
    Path("/usr/share/doc/opencv-doc/examples"),  # Debian opencv-doc: OpenCV's sample photographs
)
# (package, folder inside it) holding sample photographs.
PACKAGE_IMAGE_DIRS = (
    ("skimage", "data"),
    ("matplotlib", "mpl-data/sample_data"),
    ("imageio", "resources/images"),
    ("cv2", "data"),
)
PACKAGE_FOLDER_NAMES = ("site-packages", "dist-packages")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov")
MIN_FILE_BYTES = 16 * 1024  # icons and tiny masks are smaller
MIN_PHOTO_SIDE = 200
# Hasler-Suesstrunk colourfulness: grey-scale scans and charts score near 0, photographs well above.
MIN_COLOURFULNESS = 12.0
# Logos and diagrams are dominated by one flat colour; photographs are not.
MAX_DOMINANT_COLOUR_FRACTION = 0.2
DOMINANT_COLOUR_BITS = 4
CHECK_SIDE = 96  # photo checks run on a thumbnail
MAX_WORKING_SIDE = 640  # photos are kept at most this large in memory
MAX_REAL_IMAGES = 300


def default_image_dirs() -> list[Path]:
    """System folders, Python-package sample folders and the folders in ``$ABTRACK_IMAGE_DIRS``."""
    dirs = [Path(p) for p in os.environ.get(IMAGE_DIRS_ENV, "").split(os.pathsep) if p]
    dirs.extend(SYSTEM_IMAGE_DIRS)
    for package, sub in PACKAGE_IMAGE_DIRS:
        spec = importlib.util.find_spec(package)  # locates the package without importing it
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(Path(loc) / sub for loc in spec.submodule_search_locations)
    return dirs


def colourfulness(image: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness of an RGB image (0 for grey)."""
    rgb = image.astype(np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def dominant_colour_fraction(image: np.ndarray) -> float:
    """Share of pixels in the most common colour after quantising each channel."""
    q = (image >> (8 - DOMINANT_COLOUR_BITS)).astype(np.int32).reshape(-1, 3)
    codes = (q[:, 0] << (2 * DOMINANT_COLOUR_BITS)) | (q[:, 1] << DOMINANT_COLOUR_BITS) | q[:, 2]
    return float(np.bincount(codes).max() / len(codes))


def looks_like_photo(image: np.ndarray) -> bool:
    """True for a colour photograph; False for grey images, logos, charts and tiny icons."""
    height, width = image.shape[:2]
    if min(height, width) < MIN_PHOTO_SIDE:
        return False
    scale = CHECK_SIDE / min(height, width)
    thumb = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    return colourfulness(thumb) >= MIN_COLOURFULNESS and dominant_colour_fraction(thumb) <= MAX_DOMINANT_COLOUR_FRACTION


def _read_rgb(path: Path) -> np.ndarray | None:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_working_size(image: np.ndarray) -> np.ndarray:
    """``image`` shrunk (never enlarged) so that its longer side is at most ``MAX_WORKING_SIDE``."""
    scale = MAX_WORKING_SIDE / max(image.shape[:2])
    if scale >= 1:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def location_free_name(path: Path) -> str:
    """``path`` without the part that depends on where Python packages are installed.

    A file inside a ``site-packages`` or ``dist-packages`` folder is named from its package on
    (``skimage/data/astronaut.png``); any other file keeps its absolute path, which is the same on
    every machine for the system folders. Ordering photos by this name makes the same seed
    generate the same sequences whichever folder the checkout (and its ``.venv``) lives in.
    """
    parts = path.parts
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in PACKAGE_FOLDER_NAMES:
            return "/".join(parts[index + 1 :])
    return str(path)


def _location_free_order(path: Path) -> tuple[bool, str]:
    # System files first, then package files (the order a checkout under /work gets by path).
    name = location_free_name(path)
    return name != str(path), name


def _files_with_suffix(dirs: Iterable[Path], suffixes: tuple[str, ...], min_bytes: int) -> list[Path]:
    found: set[Path] = set()
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.suffix.lower() in suffixes and path.is_file() and path.stat().st_size >= min_bytes:
                found.add(path.resolve())
    return sorted(found, key=_location_free_order)


@functools.lru_cache(maxsize=8)
def _find_cached(dirs: tuple[Path, ...]) -> tuple[Path, ...]:
    photos = []
    for path in _files_with_suffix(dirs, PHOTO_EXTENSIONS, MIN_FILE_BYTES):
        image = _read_rgb(path)
        if image is not None and looks_like_photo(image):
            photos.append(path)
            if len(photos) == MAX_REAL_IMAGES:
                break
    return tuple(photos)


def find_real_images(dirs: Iterable[Path] | None = None) -> list[Path]:
    """Colour photographs found in ``dirs`` (default: :func:`default_image_dirs`), in
    :func:`location_free_name` order."""
    search = tuple(Path(d) for d in (default_image_dirs() if dirs is None else dirs))
    return list(_find_cached(search))


def find_sample_videos(dirs: Iterable[Path] | None = None) -> list[Path]:
    """Video files in the same places (e.g. OpenCV's ``vtest.avi`` from opencv-doc), in
    :func:`location_free_name` order."""
    return _files_with_suffix(default_image_dirs() if dirs is None else [Path(d) for d in dirs], VIDEO_EXTENSIONS, 1)


def random_crop(rng: np.random.Generator, image: np.ndarray, width: int, height: int,
                min_frac: float, max_frac: float) -> np.ndarray:
    """Crop a random region with the aspect of ``width x height`` and resize it to that size.

    The crop's shorter side is ``min_frac..max_frac`` of the largest region of that aspect that fits.
    """
    img_h, img_w = image.shape[:2]
    aspect = width / height
    fit_w, fit_h = (img_w, img_w / aspect) if img_w / aspect <= img_h else (img_h * aspect, img_h)
    frac = rng.uniform(min_frac, max_frac)
    crop_w, crop_h = max(2, int(fit_w * frac)), max(2, int(fit_h * frac))
    x0 = int(rng.integers(0, img_w - crop_w + 1))
    y0 = int(rng.integers(0, img_h - crop_h + 1))
    crop = image[y0 : y0 + crop_h, x0 : x0 + crop_w]
    interpolation = cv2.INTER_AREA if crop_w > width else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interpolation)


class PhotoSource:
    """Backgrounds (large crops) and object patches (small crops) of real photographs."""

    kind = "real"
    BACKGROUND_FRAC = (0.5, 1.0)
    PATCH_FRAC = (0.12, 0.35)
    PATCH_TRIES = 4

    def __init__(self, paths: list[Path]) -> None:
        if not paths:
            raise ValueError("PhotoSource needs at least one image path")
        self.paths = list(paths)
        self._images: dict[int, np.ndarray] = {}

    def _image(self, rng: np.random.Generator) -> np.ndarray:
        index = int(rng.integers(len(self.paths)))
        if index not in self._images:
            image = _read_rgb(self.paths[index])
            if image is None:
                raise ValueError(f"cannot decode image file: {self.paths[index]}")
            self._images[index] = to_working_size(image)
        return self._images[index]

    def background(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        return random_crop(rng, self._image(rng), width, height, *self.BACKGROUND_FRAC)

    def patch(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        """The most textured of a few random crops (a patch of plain sky is a poor target)."""
        image = self._image(rng)
        crops = [random_crop(rng, image, width, height, *self.PATCH_FRAC) for _ in range(self.PATCH_TRIES)]
        return max(crops, key=lambda crop: float(crop.std()))
