"""OpenCV trackers that need no model file, run as comparison peers."""
from __future__ import annotations

from typing import Callable, Optional

import cv2
import numpy as np

from abtrack_ros.tracking.tracker import STATE_LOST, STATE_TRACKING

# Peer name -> OpenCV factory name (tried in the main namespace, then cv2.legacy).
PEER_FACTORIES = {"csrt": "TrackerCSRT_create", "kcf": "TrackerKCF_create", "mil": "TrackerMIL_create"}


class PeerUnavailableError(RuntimeError):
    """This OpenCV build lacks the requested peer."""


def _find_factory(name: str) -> Callable[[], object]:
    if name not in PEER_FACTORIES:
        raise ValueError(f"unknown peer tracker {name!r} (known: {', '.join(PEER_FACTORIES)})")
    attr = PEER_FACTORIES[name]
    for namespace in (cv2, getattr(cv2, "legacy", None)):
        factory = getattr(namespace, attr, None) if namespace is not None else None
        if factory is not None:
            return factory
    raise PeerUnavailableError(
        f"OpenCV {cv2.__version__} has no {attr} (peer {name!r}); install opencv-contrib-python(-headless)"
    )


class OpenCVPeer:
    """One OpenCV tracker behind the runner's initialize/update interface (RGB frames, xywh boxes)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._factory = _find_factory(name)
        self._tracker: Optional[object] = None
        self._last_box = np.full(4, np.nan)
        self._ok = True  # the success flag of the latest update

    def initialize(self, frame: np.ndarray, box_xywh: np.ndarray) -> None:
        self._tracker = self._factory()
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        rect = tuple(int(round(v)) for v in box_xywh)
        self._tracker.init(bgr, (rect[0], rect[1], max(rect[2], 1), max(rect[3], 1)))
        self._last_box = np.asarray(box_xywh, dtype=np.float64)

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, None]:
        """The new box; on a reported failure the previous box is repeated (as the trackers do)."""
        ok, rect = self._tracker.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self._ok = bool(ok)
        if ok:
            self._last_box = np.asarray(rect, dtype=np.float64)
        return self._last_box.copy(), None

    def confidence(self) -> tuple[float, str]:
        """No score; the state is OpenCV's success flag of the latest update."""
        return float("nan"), STATE_TRACKING if self._ok else STATE_LOST

    def raw_score(self) -> float:
        return float("nan")  # OpenCV's trackers expose no score


def make_peers(names: list[str], report: Callable[[str], None] = print) -> list[OpenCVPeer]:
    """Peers for the names that this OpenCV has; missing ones are reported and skipped.

    An unknown name is a ValueError (a typo should not silently drop a peer).
    """
    peers = []
    for name in names:
        try:
            peers.append(OpenCVPeer(name))
        except PeerUnavailableError as exc:
            report(f"skipping peer: {exc}")
    return peers
