"""`abtrack track` on a folder of frames and on a video file."""
import cv2
import numpy as np

from abtrack_ros.cli import main


def _write_frames(folder, n=4):
    folder.mkdir()
    rng = np.random.default_rng(2)
    background = rng.integers(0, 80, size=(96, 128, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        frame = background.copy()
        frame[30:50, 20 + 3 * i : 44 + 3 * i] = (60, 200, 60)
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
        frames.append(frame)
    return frames


def test_track_frame_folder(tmp_path):
    frames_dir = tmp_path / "frames"
    _write_frames(frames_dir)
    out = tmp_path / "out"
    assert main(["track", "--video", str(frames_dir), "--box", "20,30,24,20", "--threads", "1", "--out", str(out)]) == 0
    boxes = np.loadtxt(out / "boxes.txt", delimiter=",")
    assert boxes.shape == (4, 4)
    np.testing.assert_allclose(boxes[0], [20, 30, 24, 20])
    video = next(p for p in out.iterdir() if p.suffix in (".mp4", ".avi"))
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 4
    assert (out / "blocks_score.png").stat().st_size > 1000


def test_track_video_file_and_errors(tmp_path, capsys):
    frames = _write_frames(tmp_path / "frames", n=3)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (128, 96))
    for frame in frames:
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    assert main(["track", "--video", str(video), "--box", "20,30,24,20", "--out", str(out)]) == 0
    assert np.loadtxt(out / "boxes.txt", delimiter=",").shape == (3, 4)
    assert main(["track", "--video", str(video), "--box", "1,2,3", "--out", str(out)]) == 2
    assert "x,y,w,h" in capsys.readouterr().err
    assert main(["track", "--video", str(video), "--box", "500,500,5,5", "--out", str(out)]) == 2
    assert main(["track", "--video", str(tmp_path / "missing.mp4"), "--box", "1,2,3,4", "--out", str(out)]) == 2
