"""Dataset readers on small fixtures written in each benchmark's real layout."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from abtrack_ros.data import FORMATS, DatasetError, load_frame, open_dataset


def write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        image = np.full((6, 8, 3), (i * 20) % 256, np.uint8)
        assert cv2.imwrite(str(folder / name), image)


def write_boxes(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


# --------------------------------------------------------------------------- GOT-10k
def make_got10k_train(root: Path) -> None:
    split = root / "train"
    write_frames(split / "GOT-10k_Train_000001", [f"{i:08d}.jpg" for i in range(1, 5)])
    write_boxes(split / "GOT-10k_Train_000001" / "groundtruth.txt",
                ["1,1,4,3", "2,1,4,3", "2,2,4,3", "3,2,4,3"])
    (split / "GOT-10k_Train_000001" / "absence.label").write_text("0\n0\n1\n0\n")
    (split / "GOT-10k_Train_000001" / "cover.label").write_text("8\n0\n5\n8\n")
    # no absence/cover files: visibility inferred from the boxes (frame 2 has zero width)
    write_frames(split / "GOT-10k_Train_000002", [f"{i:08d}.jpg" for i in range(1, 4)])
    write_boxes(split / "GOT-10k_Train_000002" / "groundtruth.txt", ["1,1,4,3", "1,1,0,3", "1,1,4,3"])
    (split / "list.txt").write_text("GOT-10k_Train_000001\nGOT-10k_Train_000002\n")


def test_got10k_train_labels_and_inferred_visibility(tmp_path: Path) -> None:
    make_got10k_train(tmp_path)
    seqs = open_dataset(f"got10k:{tmp_path}", split="train")
    assert [s.name for s in seqs] == ["GOT-10k_Train_000001", "GOT-10k_Train_000002"]
    first, second = seqs
    assert first.dataset == "got10k" and len(first) == 4
    assert [p.name for p in first.frames] == [f"{i:08d}.jpg" for i in range(1, 5)]
    np.testing.assert_allclose(first.boxes[1], [2, 1, 4, 3])
    # frame 2 fully covered, frame 3 absent
    assert first.visible.tolist() == [True, False, False, True]
    assert second.visible.tolist() == [True, False, True]


def test_got10k_split_folder_given_directly_and_missing_split(tmp_path: Path) -> None:
    make_got10k_train(tmp_path)
    assert len(open_dataset(f"got10k:{tmp_path / 'train'}")) == 2
    with pytest.raises(DatasetError, match="pass a split"):
        open_dataset(f"got10k:{tmp_path}")
    with pytest.raises(DatasetError, match="split folder not found"):
        open_dataset(f"got10k:{tmp_path}", split="val")


def test_got10k_test_split_first_row_only(tmp_path: Path) -> None:
    seq = tmp_path / "test" / "GOT-10k_Test_000001"
    write_frames(seq, [f"{i:08d}.jpg" for i in range(1, 4)])
    write_boxes(seq / "groundtruth.txt", ["10.5,20,30,40"])  # no list.txt: folders are found
    (s,) = open_dataset(f"got10k:{tmp_path}", split="test")
    np.testing.assert_allclose(s.boxes[0], [10.5, 20, 30, 40])
    assert np.isnan(s.boxes[1:]).all()
    assert s.visible.tolist() == [True, False, False]


def test_got10k_malformed_line_and_count_mismatch(tmp_path: Path) -> None:
    seq = tmp_path / "seq"
    write_frames(seq, [f"{i:08d}.jpg" for i in range(1, 4)])
    write_boxes(seq / "groundtruth.txt", ["1,1,4,3", "1,1,4", "1,1,4,3"])
    with pytest.raises(DatasetError, match=r"groundtruth.txt:2: expected 4 numbers"):
        open_dataset(f"got10k:{tmp_path}")
    write_boxes(seq / "groundtruth.txt", ["1,1,4,3", "1,1,4,3"])
    with pytest.raises(DatasetError, match="2 boxes for 3 frames"):
        open_dataset(f"got10k:{tmp_path}")
    write_boxes(seq / "groundtruth.txt", ["1,1,4,3"] * 3)
    (seq / "cover.label").write_text("8\n8\n")
    with pytest.raises(DatasetError, match="2 labels for 3 frames"):
        open_dataset(f"got10k:{tmp_path}")


# --------------------------------------------------------------------------- LaSOT
def make_lasot_sequence(root: Path, cls: str, index: int, occlusion: str | None, out_of_view: str | None) -> None:
    seq = root / cls / f"{cls}-{index}"
    write_frames(seq / "img", [f"{i:08d}.jpg" for i in range(1, 5)])
    write_boxes(seq / "groundtruth.txt", ["1,2,3,4"] * 4)
    if occlusion is not None:
        (seq / "full_occlusion.txt").write_text(occlusion)
    if out_of_view is not None:
        (seq / "out_of_view.txt").write_text(out_of_view)


def test_lasot_flags_and_split_lists(tmp_path: Path) -> None:
    make_lasot_sequence(tmp_path, "airplane", 1, "0,1,0,0", "0,0,0,1")
    make_lasot_sequence(tmp_path, "airplane", 2, None, None)  # optional flag files missing
    make_lasot_sequence(tmp_path, "bird", 3, "0,0,0,0", "0,0,0,0")
    (tmp_path / "testing_set.txt").write_text("airplane-1\nbird-3\n")
    seqs = {s.name: s for s in open_dataset(f"lasot:{tmp_path}")}
    assert sorted(seqs) == ["airplane-1", "airplane-2", "bird-3"]
    assert seqs["airplane-1"].visible.tolist() == [True, False, True, False]
    assert seqs["airplane-2"].visible.all()
    assert seqs["airplane-1"].frames[0] == tmp_path / "airplane" / "airplane-1" / "img" / "00000001.jpg"
    assert [s.name for s in open_dataset(f"lasot:{tmp_path}", split="test")] == ["airplane-1", "bird-3"]
    with pytest.raises(DatasetError, match="split file not found"):
        open_dataset(f"lasot:{tmp_path}", split="train")


# --------------------------------------------------------------------------- TrackingNet
def test_trackingnet_numeric_frame_order_and_chunks(tmp_path: Path) -> None:
    names = [f"{i}.jpg" for i in range(12)]
    write_frames(tmp_path / "TRAIN_0" / "frames" / "seqA", names)
    write_boxes(tmp_path / "TRAIN_0" / "anno" / "seqA.txt", [f"{i},0,5,5" for i in range(12)])
    write_frames(tmp_path / "TEST" / "frames" / "seqT", names[:3])
    write_boxes(tmp_path / "TEST" / "anno" / "seqT.txt", ["1,1,5,5"])
    (train,) = open_dataset(f"trackingnet:{tmp_path}", split="train")
    assert [p.name for p in train.frames] == names  # 2.jpg before 10.jpg
    np.testing.assert_allclose(train.boxes[:, 0], np.arange(12))
    (test,) = open_dataset(f"trackingnet:{tmp_path}", split="test")
    assert test.visible.tolist() == [True, False, False]
    assert len(open_dataset(f"trackingnet:{tmp_path}")) == 2
    assert len(open_dataset(f"trackingnet:{tmp_path}", split="TRAIN_0")) == 1
    with pytest.raises(DatasetError, match="unknown TrackingNet split"):
        open_dataset(f"trackingnet:{tmp_path}", split="TRAIN_7")


# --------------------------------------------------------------------------- COCO
def test_coco_instances_skip_crowd_and_tiny(tmp_path: Path) -> None:
    write_frames(tmp_path / "val2017", ["000000000001.jpg", "000000000002.jpg"])
    content = {
        "images": [{"id": 1, "file_name": "000000000001.jpg"}, {"id": 2, "file_name": "000000000002.jpg"}],
        "annotations": [
            {"id": 10, "image_id": 1, "bbox": [5, 6, 50, 40], "iscrowd": 0},
            {"id": 11, "image_id": 1, "bbox": [0, 0, 80, 80], "iscrowd": 1},
            {"id": 12, "image_id": 2, "bbox": [1, 1, 10, 10], "iscrowd": 0},  # too small
            {"id": 13, "image_id": 2, "bbox": [3, 4, 100, 60], "iscrowd": 0},
        ],
    }
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(content))
    seqs = open_dataset(f"coco:{tmp_path}", split="val")
    assert [s.name for s in seqs] == ["1_10", "2_13"]
    assert seqs[1].frames == [tmp_path / "val2017" / "000000000002.jpg"]
    np.testing.assert_allclose(seqs[1].boxes, [[3, 4, 100, 60]])
    assert seqs[0].visible.tolist() == [True]
    with pytest.raises(DatasetError, match="instances_train2017.json"):
        open_dataset(f"coco:{tmp_path}")  # default split is train
    (tmp_path / "annotations" / "instances_val2017.json").write_text('{"images": [], "annotations": [{"id": 1}]}')
    with pytest.raises(DatasetError, match="malformed COCO annotations"):
        open_dataset(f"coco:{tmp_path}", split="val")


# --------------------------------------------------------------------------- UAV123
def test_uav123_nan_rows_and_frames_matched_by_count(tmp_path: Path) -> None:
    write_frames(tmp_path / "data_seq" / "UAV123" / "bike1", [f"{i:06d}.jpg" for i in range(1, 6)])
    write_boxes(tmp_path / "anno" / "UAV123" / "bike1.txt", ["1,1,5,5", "NaN,NaN,NaN,NaN", "2,2,5,5"])
    (s,) = open_dataset(f"uav123:{tmp_path}")
    assert [p.name for p in s.frames] == ["000001.jpg", "000002.jpg", "000003.jpg"]
    assert s.visible.tolist() == [True, False, True]
    write_boxes(tmp_path / "anno" / "UAV123" / "car1.txt", ["1,1,5,5"])
    with pytest.raises(DatasetError, match="frame folder not found"):
        open_dataset(f"uav123:{tmp_path}")


# --------------------------------------------------------------------------- OTB
def test_otb_separators_and_two_target_sequences(tmp_path: Path) -> None:
    write_frames(tmp_path / "Basketball" / "img", [f"{i:04d}.jpg" for i in range(1, 4)])
    write_boxes(tmp_path / "Basketball" / "groundtruth_rect.txt", ["1,2,3,4", "1\t2\t3\t4", "1 2  3 4,"])
    write_frames(tmp_path / "Jogging" / "img", [f"{i:04d}.jpg" for i in range(1, 3)])
    write_boxes(tmp_path / "Jogging" / "groundtruth_rect.1.txt", ["1,1,2,2", "1,1,2,2"])
    write_boxes(tmp_path / "Jogging" / "groundtruth_rect.2.txt", ["5,5,2,2", "0,0,0,0"])
    seqs = {s.name: s for s in open_dataset(f"otb:{tmp_path}")}
    assert sorted(seqs) == ["Basketball", "Jogging-1", "Jogging-2"]
    np.testing.assert_allclose(seqs["Basketball"].boxes, [[1, 2, 3, 4]] * 3)
    assert seqs["Jogging-2"].visible.tolist() == [True, False]


def test_otb_first_annotated_frame_offset(tmp_path: Path) -> None:
    write_frames(tmp_path / "Tiger1" / "img", [f"{i:04d}.jpg" for i in range(1, 9)])
    write_boxes(tmp_path / "Tiger1" / "groundtruth_rect.txt", ["1,1,2,2"] * 3)
    (s,) = open_dataset(f"otb:{tmp_path}")
    assert [p.name for p in s.frames] == ["0006.jpg", "0007.jpg", "0008.jpg"]


# --------------------------------------------------------------------------- entry point errors, frames
def test_open_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset path not found"):
        open_dataset(f"got10k:{tmp_path / 'nope'}")
    with pytest.raises(DatasetError, match="allowed: " + ", ".join(FORMATS)):
        open_dataset(f"imagenet:{tmp_path}")
    with pytest.raises(DatasetError, match="FORMAT:PATH"):
        open_dataset(str(tmp_path.name))
    with pytest.raises(DatasetError, match="no sequences found"):
        open_dataset(f"otb:{tmp_path}")
    with pytest.raises(DatasetError, match="meta.json"):
        make_got10k_train(tmp_path)
        open_dataset(f"synthetic:{tmp_path}", split="train")


def test_load_frame_is_rgb_and_rejects_bad_files(tmp_path: Path) -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    rgb = load_frame(tmp_path / "red.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 5, 3)
    assert rgb[0, 0].tolist() == [200, 0, 0]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot decode"):
        load_frame(tmp_path / "broken.jpg")
    with pytest.raises(DatasetError, match="not found"):
        load_frame(tmp_path / "missing.jpg")


# --------------------------------------------------------------------------- the paper configs' specs
PAPER_CONFIGS = ("abtrack_vit_tiny", "abtrack_deit_tiny", "abtrack_avit_tiny", "abtrack_deit_small",
                 "abtrack_deit_base")


def test_paper_config_datasets_open_in_their_real_layouts(tmp_path: Path, monkeypatch) -> None:
    """Every `train.datasets` entry (spec and split) of the paper configs reads its benchmark layout."""
    from abtrack_ros.config import load_config

    data = tmp_path / "data"
    make_got10k_train(data / "got10k")
    make_lasot_sequence(data / "lasot", "airplane", 1, None, None)
    (data / "lasot" / "training_set.txt").write_text("airplane-1\n")
    write_frames(data / "coco" / "train2017", ["000000000001.jpg"])
    (data / "coco" / "annotations").mkdir(parents=True)
    (data / "coco" / "annotations" / "instances_train2017.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "000000000001.jpg"}],
         "annotations": [{"id": 5, "image_id": 1, "bbox": [0, 0, 40, 40], "iscrowd": 0}]}))
    write_frames(data / "trackingnet" / "TRAIN_0" / "frames" / "seqA", ["0.jpg", "1.jpg"])
    write_boxes(data / "trackingnet" / "TRAIN_0" / "anno" / "seqA.txt", ["1,1,5,5", "2,1,5,5"])
    monkeypatch.chdir(tmp_path)  # the configs name paths relative to the working directory
    repo = Path(__file__).resolve().parent.parent
    for name in PAPER_CONFIGS:
        specs = load_config(repo / "config" / "models" / f"{name}.yaml").train.datasets
        assert {s.spec.partition(":")[0] for s in specs} == {"got10k", "lasot", "coco", "trackingnet"}
        for spec in specs:
            assert open_dataset(spec.spec, spec.split), (name, spec)
