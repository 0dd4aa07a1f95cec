"""Geometry: crops with padding, map-back round trips, IoU hand cases, clipping, validation."""
import numpy as np
import pytest

from abtrack_ros.tracking import geometry as g


def test_crop_round_trip_box_to_crop_and_back():
    window = g.crop_window((100.0, 80.0), side=64.0, out_size=256)
    box = np.array([90.0, 72.0, 20.0, 16.0])  # centre (100, 80)
    crop_box = g.box_to_crop(box, window)
    np.testing.assert_allclose(crop_box, [0.5, 0.5, 20 / 64, 16 / 64])
    np.testing.assert_allclose(g.box_from_crop(crop_box, window), box)


def test_crop_patch_places_pixels_and_pads_with_zero():
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[10:20, 30:40] = 200  # a 10x10 bright square whose centre is (35, 15)
    window = g.crop_window((35.0, 15.0), side=40.0, out_size=40)  # scale 1: pure shift
    patch = g.crop_patch(frame, window)
    assert patch.shape == (40, 40, 3) and patch.dtype == np.uint8
    assert (patch[15:25, 15:25] == 200).all()  # the square lands at the centre
    assert patch[0:5].sum() == 0  # rows above the image (y < 0) are zero padding
    assert patch[:, 35:].sum() == 0  # columns right of the image (x >= 60) are zero padding


def test_crop_patch_scales_to_output_size():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[40:60, 40:60] = 255
    window = g.crop_window((50.0, 50.0), side=40.0, out_size=80)  # x2 zoom
    patch = g.crop_patch(frame, window)
    bright = np.argwhere(patch[..., 0] > 127)
    assert bright.min(axis=0).tolist() == [20, 20] and bright.max(axis=0).tolist() == [59, 59]


def test_crop_side_and_center():
    assert g.crop_side(np.array([0, 0, 4.0, 9.0]), 2.0) == pytest.approx(12.0)
    assert g.box_center(np.array([10, 20, 4, 6])) == (12.0, 23.0)
    with pytest.raises(ValueError):
        g.crop_window((0, 0), side=0.0, out_size=10)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 10, 10], 50 / 150),
        ([0, 0, 10, 10], [20, 20, 5, 5], 0.0),
        ([0, 0, 10, 10], [2, 2, 5, 5], 25 / 100),
        ([0, 0, 10, 10], [0, 0, 0, 10], 0.0),
    ],
)
def test_iou_hand_cases(a, b, expected):
    assert g.iou_xywh(np.array(a, float), np.array(b, float)) == pytest.approx(expected)


def test_iou_vectorised_and_nan():
    a = np.array([[0, 0, 10, 10], [np.nan, 0, 1, 1]], float)
    b = np.array([[5, 5, 10, 10], [0, 0, 1, 1]], float)
    ious = g.iou_xywh(a, b)
    assert ious[0] == pytest.approx(25 / 175) and np.isnan(ious[1])
    with pytest.raises(ValueError):
        g.iou_xywh(np.zeros((2, 4)), np.zeros((3, 4)))


def test_clip_box():
    np.testing.assert_allclose(g.clip_box(np.array([-5, -5, 20, 20.0]), 100, 50), [0, 0, 15, 15])
    np.testing.assert_allclose(g.clip_box(np.array([90, 40, 20, 20.0]), 100, 50), [90, 40, 10, 10])
    # a box fully outside collapses onto the border with the minimum size
    np.testing.assert_allclose(g.clip_box(np.array([200, 10, 5, 5.0]), 100, 50), [99, 10, 1, 5])


def test_hann_window_positive_and_peaked():
    w = g.hann_window_2d(16)
    assert w.shape == (16, 16) and (w > 0).all()
    assert w[7, 7] == w.max() and w[0, 0] == w.min()
    np.testing.assert_allclose(w, w.T)


def test_validate_box_and_frame():
    assert g.validate_box([1, 2, 3, 4], 10, 10).tolist() == [1, 2, 3, 4]
    for bad in ([1, 2, 3], [np.nan, 0, 1, 1], [0, 0, 0, 5], [0, 0, 5, -1], [20, 20, 5, 5], [-10, 0, 5, 5], "abcd"):
        with pytest.raises(ValueError):
            g.validate_box(bad, 10, 10)
    # Boxes are returned clipped to the image: huge ones become the image, never an infinite size.
    np.testing.assert_allclose(g.validate_box([-5, 2, 10, 4], 10, 10), [0, 2, 5, 4])
    for huge in ([0, 0, 1e155, 1e155], [-1e200, -1e200, 1e201, 1e201], [0, 0, 1e9, 1e9]):
        np.testing.assert_allclose(g.validate_box(huge, 10, 8), [0, 0, 10, 8])
    for tiny_or_overflowing, reason in (([1, 1, 1e-6, 1e-6], "at least 3 x 3"), ([8, 1, 5, 5], "at least 3 x 3"),
                                        ([1e308, 0, 1e308, 5], "infinite")):
        with pytest.raises(ValueError, match=reason):
            g.validate_box(tiny_or_overflowing, 10, 10)
    with pytest.raises(ValueError, match="too small"):
        g.validate_box([0, 0, 1, 1], 1, 1)
    g.validate_frame(np.zeros((4, 5, 3), np.uint8))
    for bad in (np.zeros((4, 5, 3), np.float32), np.zeros((4, 5), np.uint8), np.zeros((0, 5, 3), np.uint8), [1, 2]):
        with pytest.raises(ValueError):
            g.validate_frame(bad)


def test_hann_window_hand_values():
    # 1-D Hann of size n without its zero end points: 0.5 - 0.5 cos(2 pi k / (n + 1)), k = 1..n.
    np.testing.assert_allclose(g.hann_window_2d(3), np.outer([0.5, 1.0, 0.5], [0.5, 1.0, 0.5]), atol=1e-7)
    k = np.arange(1, 17)
    one_d = 0.5 - 0.5 * np.cos(2 * np.pi * k / 17)
    np.testing.assert_allclose(g.hann_window_2d(16), np.outer(one_d, one_d), atol=1e-6)
