"""A real person model for the offline detector and tagger: MediaPipe Pose (33 landmarks + mask).

MediaPipe 0.10.14 (PyPI, Apache-2.0) ships the BlazePose detector and the "full" landmark model
(``pose_landmark_full.tflite``, with a person-segmentation head) inside its wheel and runs them
through its own graph on TFLite/XNNPACK — no download at run time. Newer MediaPipe releases
(0.10.30+) no longer ship these models (their Tasks API fetches ``.task`` files from the
network), which is why the version is pinned; it wants protobuf < 5, so the ``onnx`` dev tool is
pinned below 1.23 (1.22 is the last line accepting protobuf 4). See README "Offline models".

`find_person` runs the pose graph once on an RGB array and returns the landmarks in pixels with
their visibilities and the person mask; None when no person is found. One graph per thread
(MediaPipe graphs are not re-entrant), built on first use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

#: Landmark indices (BlazePose topology).
NOSE, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 0, 11, 12, 13, 14, 15, 16
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_FOOT, R_FOOT = 29, 30, 31, 32
#: Segmentation probability above which a pixel belongs to the person.
MASK_THRESHOLD: Final[float] = 0.5
#: The longest side the pose graph is given, up- or downscaled to it, so one photo at any size
#: gives the same answer (it resizes internally to 256²; bigger is waste).
MAX_SIDE: Final[int] = 640

_local = threading.local()


@dataclass(frozen=True, slots=True)
class Person:
    """Landmarks (33, 2) in pixels of the analysed array, visibility (33,), mask (h, w) bool."""

    points: NDArray[np.float64]
    visibility: NDArray[np.float64]
    mask: NDArray[np.bool_]

    def seen(self, *indices: int, inside: bool = True, threshold: float = 0.5) -> bool:
        """All `indices` visible (and, with `inside`, within the image)."""
        h, w = self.mask.shape
        for i in indices:
            x, y = self.points[i]
            if self.visibility[i] < threshold:
                return False
            if inside and not (0 <= x < w and 0 <= y < h):
                return False
        return True

    def y(self, *indices: int) -> float:
        """Mean row of the landmarks."""
        return float(np.mean(self.points[list(indices), 1]))

    def x(self, *indices: int) -> float:
        """Mean column of the landmarks."""
        return float(np.mean(self.points[list(indices), 0]))


def _graph() -> Any:
    graph = getattr(_local, "pose", None)
    if graph is None:
        from mediapipe.python.solutions import pose

        graph = pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                          min_detection_confidence=0.5)
        _local.pose = graph
    return graph


def available() -> bool:
    """True when MediaPipe imports (the ``vision`` extra is installed)."""
    try:
        import mediapipe.python.solutions.pose  # noqa: F401
    except ImportError:
        return False
    return True


def find_person(rgb: NDArray[np.uint8]) -> Person | None:
    """Pose landmarks and person mask of the most prominent person in `rgb` (h, w, 3), or None."""
    h, w = rgb.shape[:2]
    result = _graph().process(np.ascontiguousarray(rgb))
    if result.pose_landmarks is None or result.segmentation_mask is None:
        return None
    marks = result.pose_landmarks.landmark
    points = np.array([(m.x * w, m.y * h) for m in marks], dtype=np.float64)
    visibility = np.array([m.visibility for m in marks], dtype=np.float64)
    mask = np.asarray(result.segmentation_mask) > MASK_THRESHOLD
    if not mask.any():
        return None
    return Person(points, visibility, mask)
