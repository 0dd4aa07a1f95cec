"""One reader per benchmark layout; each turns a root folder (and split) into sequences.

Every reader has the signature ``(root: Path, split: str | None) -> list[Sequence]``. The layouts
and the visibility conventions are documented in docs/data.md.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .annotations import list_frames, pad_boxes, read_boxes, read_flags
from .sequence import DatasetError, Sequence, valid_boxes

GOT10K_SPLITS = ("train", "val", "test")
# GOT-10k cover.label: 0 = fully covered, 1..8 = increasing visible ratio.
GOT10K_FULLY_COVERED = 0
LASOT_SPLIT_FILES = {"train": "training_set.txt", "test": "testing_set.txt"}
TRACKINGNET_TRAIN_CHUNK = re.compile(r"TRAIN_\d+")
TRACKINGNET_TEST_CHUNK = "TEST"
COCO_DEFAULT_SPLIT = "train"
# COCO calls boxes under 32 x 32 px "small"; they make poor tracking templates, so they are skipped.
COCO_MIN_BOX_AREA = 32 * 32
COCO_MIN_BOX_SIDE = 8.0
UAV123_DEFAULT_SUBSET = "UAV123"
# OTB sequences whose image folder starts before the annotated frames (benchmark sequence table).
OTB_FIRST_ANNOTATED_FRAME = {"David": 300, "Tiger1": 6, "BlurCar1": 247, "BlurCar3": 3, "BlurCar4": 18}


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


# --------------------------------------------------------------------------- GOT-10k / synthetic
def _got10k_split_folder(root: Path, split: str | None) -> Path:
    if split is not None:
        if (root / split).is_dir():
            return root / split
        if root.name == split:
            return root
        raise DatasetError(f"split folder not found: {root / split}")
    if (root / "list.txt").is_file():
        return root
    present = [s for s in GOT10K_SPLITS if (root / s).is_dir()]
    if present:
        raise DatasetError(
            f"{root} holds the splits {', '.join(present)}: pass a split or point at the split folder"
        )
    return root


def _got10k_sequence(folder: Path, dataset: str) -> Sequence:
    if not folder.is_dir():
        raise DatasetError(f"sequence folder listed in list.txt not found: {folder}")
    frames = list_frames(folder)
    boxes = pad_boxes(read_boxes(folder / "groundtruth.txt"), len(frames), folder / "groundtruth.txt")
    visible = valid_boxes(boxes)
    absence_file, cover_file = folder / "absence.label", folder / "cover.label"
    if absence_file.is_file():
        visible &= read_flags(absence_file, len(frames)) == 0
    if cover_file.is_file():
        visible &= read_flags(cover_file, len(frames)) != GOT10K_FULLY_COVERED
    return Sequence(folder.name, frames, boxes, visible, dataset)


def _got10k_layout(root: Path, split: str | None, dataset: str) -> list[Sequence]:
    folder = _got10k_split_folder(root, split)
    list_file = folder / "list.txt"
    if list_file.is_file():
        names = _read_lines(list_file)
    else:  # list.txt is optional: every folder with a groundtruth.txt is a sequence
        names = [d.name for d in _subdirs(folder) if (d / "groundtruth.txt").is_file()]
    return [_got10k_sequence(folder / name, dataset) for name in names]


def read_got10k(root: Path, split: str | None) -> list[Sequence]:
    return _got10k_layout(root, split, "got10k")


def read_synthetic(root: Path, split: str | None) -> list[Sequence]:
    folder = _got10k_split_folder(root, split)
    if not (folder / "meta.json").is_file():
        raise DatasetError(f"{folder} has no meta.json: not a dataset written by `abtrack synth`")
    return _got10k_layout(root, split, "synthetic")


# --------------------------------------------------------------------------- LaSOT
def _lasot_sequence_dirs(root: Path) -> list[Path]:
    """``root/<class>/<class-N>`` (the release layout) or ``root/<class-N>`` (flattened)."""
    found = []
    for child in _subdirs(root):
        if (child / "groundtruth.txt").is_file():
            found.append(child)
        else:
            found.extend(d for d in _subdirs(child) if (d / "groundtruth.txt").is_file())
    return found


def _lasot_sequence(folder: Path) -> Sequence:
    frames = list_frames(folder / "img")
    boxes = pad_boxes(read_boxes(folder / "groundtruth.txt"), len(frames), folder / "groundtruth.txt")
    visible = valid_boxes(boxes)
    for flag_name in ("full_occlusion.txt", "out_of_view.txt"):
        flag_file = folder / flag_name
        if flag_file.is_file():
            visible &= read_flags(flag_file, len(frames)) == 0
    return Sequence(folder.name, frames, boxes, visible, "lasot")


def read_lasot(root: Path, split: str | None) -> list[Sequence]:
    folders = _lasot_sequence_dirs(root)
    if split is not None:
        if split not in LASOT_SPLIT_FILES:
            raise DatasetError(f"unknown LaSOT split {split!r}; allowed: {', '.join(LASOT_SPLIT_FILES)}")
        split_file = root / LASOT_SPLIT_FILES[split]
        if not split_file.is_file():
            raise DatasetError(f"LaSOT split file not found: {split_file}")
        wanted = set(_read_lines(split_file))
        folders = [f for f in folders if f.name in wanted]
    return [_lasot_sequence(f) for f in folders]


# --------------------------------------------------------------------------- TrackingNet
def _trackingnet_chunks(root: Path, split: str | None) -> list[Path]:
    chunks = [d for d in _subdirs(root) if TRACKINGNET_TRAIN_CHUNK.fullmatch(d.name) or d.name == TRACKINGNET_TEST_CHUNK]
    if split is None:
        return chunks
    if split == "train":
        return [d for d in chunks if TRACKINGNET_TRAIN_CHUNK.fullmatch(d.name)]
    if split == "test":
        return [d for d in chunks if d.name == TRACKINGNET_TEST_CHUNK]
    named = [d for d in chunks if d.name == split]
    if not named:
        raise DatasetError(
            f"unknown TrackingNet split {split!r}: use train, test or one of "
            f"{', '.join(d.name for d in chunks) or '(no TRAIN_k / TEST folders found)'}"
        )
    return named


def read_trackingnet(root: Path, split: str | None) -> list[Sequence]:
    sequences = []
    for chunk in _trackingnet_chunks(root, split):
        anno_dir = chunk / "anno"
        if not anno_dir.is_dir():
            raise DatasetError(f"TrackingNet chunk without an anno folder: {anno_dir}")
        for anno in sorted(anno_dir.glob("*.txt")):
            frames = list_frames(chunk / "frames" / anno.stem)
            boxes = pad_boxes(read_boxes(anno), len(frames), anno)
            sequences.append(Sequence(anno.stem, frames, boxes, valid_boxes(boxes), "trackingnet"))
    return sequences


# --------------------------------------------------------------------------- COCO 2017
def _load_json(path: Path) -> dict:
    try:
        with path.open() as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read COCO annotation file {path}: {exc}") from exc


def read_coco(root: Path, split: str | None) -> list[Sequence]:
    """Each non-crowd instance of a reasonable size becomes a one-frame sequence."""
    split = split or COCO_DEFAULT_SPLIT
    ann_file = root / "annotations" / f"instances_{split}2017.json"
    image_dir = root / f"{split}2017"
    if not ann_file.is_file():
        raise DatasetError(f"COCO annotation file not found: {ann_file}")
    if not image_dir.is_dir():
        raise DatasetError(f"COCO image folder not found: {image_dir}")
    content = _load_json(ann_file)
    try:
        file_names = {image["id"]: image["file_name"] for image in content["images"]}
        sequences = []
        for ann in content["annotations"]:
            if ann.get("iscrowd", 0):
                continue
            box = np.asarray(ann["bbox"], dtype=np.float64)
            if box.shape != (4,) or min(box[2], box[3]) < COCO_MIN_BOX_SIDE or box[2] * box[3] < COCO_MIN_BOX_AREA:
                continue
            frame = image_dir / file_names[ann["image_id"]]
            sequences.append(Sequence(f"{ann['image_id']}_{ann['id']}", [frame], box[None], [True], "coco"))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{ann_file}: malformed COCO annotations ({type(exc).__name__}: {exc})") from exc
    return sequences


# --------------------------------------------------------------------------- UAV123
def read_uav123(root: Path, split: str | None) -> list[Sequence]:
    """Sequences come from ``anno/<subset>/<seq>.txt``; frames are the first N of ``data_seq/<subset>/<seq>``."""
    subset = split or UAV123_DEFAULT_SUBSET
    anno_dir = root / "anno" / subset
    if not anno_dir.is_dir():
        raise DatasetError(f"UAV123 annotation folder not found: {anno_dir}")
    sequences = []
    for anno in sorted(anno_dir.glob("*.txt")):
        boxes = read_boxes(anno)
        frames = list_frames(root / "data_seq" / subset / anno.stem)
        if len(frames) < len(boxes):
            raise DatasetError(f"{anno}: {len(boxes)} boxes but only {len(frames)} frames")
        sequences.append(Sequence(anno.stem, frames[: len(boxes)], boxes, valid_boxes(boxes), "uav123"))
    return sequences


# --------------------------------------------------------------------------- OTB
def read_otb(root: Path, split: str | None) -> list[Sequence]:
    """``<Seq>/img`` plus ``groundtruth_rect.txt``; two-target sequences have ``groundtruth_rect.1.txt``, ``.2``."""
    if split is not None:
        raise DatasetError("OTB has no splits: leave split unset")
    sequences = []
    for folder in _subdirs(root):
        gt_files = sorted(folder.glob("groundtruth_rect*.txt"))
        if not gt_files:
            continue
        all_frames = list_frames(folder / "img")
        start = OTB_FIRST_ANNOTATED_FRAME.get(folder.name, 1) - 1
        for gt_file in gt_files:
            boxes = read_boxes(gt_file)
            frames = all_frames[start : start + len(boxes)]
            if len(frames) < len(boxes):
                available = max(0, len(all_frames) - start)
                raise DatasetError(f"{gt_file}: {len(boxes)} boxes but only {available} frames from frame {start + 1}")
            target = gt_file.name[len("groundtruth_rect") : -len(".txt")].strip(".")
            name = f"{folder.name}-{target}" if target else folder.name
            sequences.append(Sequence(name, frames, boxes, valid_boxes(boxes), "otb"))
    return sequences
