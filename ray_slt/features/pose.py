"""Pose estimation behind one interface, with two backends, writing pose-format ``.pose`` files.

:class:`PoseEstimator` turns RGB frames ``[T, H, W, 3]`` into per-frame points ``[T, P, D]`` (pixels of the
given frames, plus each backend's extra dimensions) and confidences ``[T, P]`` in the estimator's own
components; :func:`ray_slt.data.poses.build_pose` makes the ``.pose`` (pose-format: a point is masked exactly when its
confidence is 0).

* ``mediapipe`` (:class:`MediaPipeHolistic`, the default, embedded): MediaPipe Holistic from a mediapipe
  release that ships its models inside the wheel (0.10.14; only ``model_complexity=1`` works offline), on the
  CPU. Components ``POSE_LANDMARKS`` (33), ``FACE_LANDMARKS`` (468, or 478 refined), ``LEFT_HAND_LANDMARKS``,
  ``RIGHT_HAND_LANDMARKS`` (21 each), format ``XYZC``: x/y in pixels, z MediaPipe's relative depth, body
  confidence = visibility, face/hands 1 when found, as pose-format's ``load_holistic`` writes them (its
  ``POSE_WORLD_LANDMARKS`` are left out: metric coordinates nobody here reads). Holistic tracks a single
  person by itself; the manifest's ``bbox`` (cropped before estimation) keeps it on the signer. Each sample
  starts with a new graph, so results do not depend on which sample a worker saw before.
* ``mmpose`` (:class:`MMPoseWholeBody`, for GPU clusters, optional extra): COCO-WholeBody-133 through
  MMPose's ``init_model``/``inference_topdown`` (with an MMDetection person detector when configured, else the
  whole frame as the person box). Components ``BODY`` (23), ``FACE`` (68), ``LEFT_HAND``, ``RIGHT_HAND``
  (21 each) as pose-format's ``cocowholebody_components()``, format ``XYC``. When several people are found,
  :func:`select_signer` picks one deterministically.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

from ray_slt.errors import RaySltError

HOLISTIC_NAME = "mediapipe-holistic"
MMPOSE_NAME = "mmpose-wholebody"


class PoseEstimator(abc.ABC):
    """A pose estimator: frames in, points and confidences (in its own components) out."""

    name: str = ""

    @abc.abstractmethod
    def components(self) -> list:
        """The pose-format ``PoseHeaderComponent`` list of this estimator's output."""

    @abc.abstractmethod
    def estimate(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frames`` RGB uint8 ``[T, H, W, 3]`` -> points float32 ``[T, P, D]`` (x, y in pixels of these
        frames) and confidences float32 ``[T, P]`` (0 where a point was not found)."""

    def info(self) -> dict[str, Any]:
        """Name, library versions and model settings (recorded in provenance)."""
        return {"name": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model."""


# ------------------------------------------------------------------------------------------- MediaPipe


class MediaPipeHolistic(PoseEstimator):
    """MediaPipe Holistic (``mediapipe.solutions.holistic``), one graph per estimator, CPU."""

    name = HOLISTIC_NAME

    def __init__(
        self,
        model_complexity: int = 1,
        static_image_mode: bool = False,
        smooth_landmarks: bool = True,
        refine_face_landmarks: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ):
        try:
            import mediapipe as mp
        except ImportError as e:
            raise RaySltError(
                "pose backend 'mediapipe' needs mediapipe==0.10.14 (pip install 'ray_slt[mediapipe]'): " + str(e)
            ) from None
        if not hasattr(mp, "solutions"):
            raise RaySltError(
                f"mediapipe {mp.__version__} has no 'solutions' (Holistic); install mediapipe==0.10.14, the last "
                "release that ships its Holistic models inside the wheel"
            )
        self._mp = mp
        self.options = {
            "model_complexity": int(model_complexity),
            "static_image_mode": bool(static_image_mode),
            "smooth_landmarks": bool(smooth_landmarks),
            "refine_face_landmarks": bool(refine_face_landmarks),
            "min_detection_confidence": float(min_detection_confidence),
            "min_tracking_confidence": float(min_tracking_confidence),
        }
        self.face_points = 478 if refine_face_landmarks else 468
        self._graph = None

    def components(self) -> list:
        from pose_format.utils.holistic import holistic_components

        extra = self.face_points - 468
        return [c for c in holistic_components("XYZC", extra) if c.name != "POSE_WORLD_LANDMARKS"]

    def _reset(self):
        # A new graph per sample: tracking and the landmark/visibility filters start from scratch, so results do
        # not depend on what the worker saw before. (Feeding a blank frame, as pose-format's pool does, clears
        # the tracked person but not the visibility filter: visibilities then differ in the 4th decimal.)
        if self._graph is not None:
            self._graph.close()
        self._graph = self._mp.solutions.holistic.Holistic(**self.options)
        return self._graph

    def estimate(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        graph = self._reset()
        t = len(frames)
        p = 33 + self.face_points + 21 + 21
        data = np.zeros((t, p, 3), dtype=np.float32)
        conf = np.zeros((t, p), dtype=np.float32)
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            res = graph.process(np.ascontiguousarray(frame))
            scale = np.array([w, h, 1.0], dtype=np.float32)
            offset = 0
            for part, n, visibility in (
                (res.pose_landmarks, 33, True),
                (res.face_landmarks, self.face_points, False),
                (res.left_hand_landmarks, 21, False),
                (res.right_hand_landmarks, 21, False),
            ):
                if part is not None:
                    lm = part.landmark
                    data[i, offset : offset + n] = np.array([(q.x, q.y, q.z) for q in lm], np.float32) * scale
                    conf[i, offset : offset + n] = [q.visibility for q in lm] if visibility else 1.0
                offset += n
        return data, conf

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "mediapipe": self._mp.__version__, **self.options}

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None


# ---------------------------------------------------------------------------------------------- MMPose

# COCO-WholeBody-133 body points used to judge a person: nose, eyes, shoulders, elbows, wrists.
_UPPER_BODY = (0, 1, 2, 5, 6, 7, 8, 9, 10)
_SHOULDERS = (5, 6)


def select_signer(
    keypoints: np.ndarray,
    scores: np.ndarray,
    image_size: tuple[int, int],
    previous: np.ndarray | None = None,
    min_score: float = 0.3,
) -> int | None:
    """The index of the signer among the people of one frame (COCO-WholeBody order), or None.

    A person counts when at least 3 upper-body points (nose, eyes, shoulders, elbows, wrists) score above
    ``min_score``. With ``previous`` (the signer's upper-body centre in the previous frame), the person whose
    centre is nearest to it is kept when within one of that person's shoulder widths (the signer does not
    jump). Otherwise the largest, most central person wins: score = upper-body extent x (1 - distance of its
    centre from the image centre / half the image diagonal). Ties go to the lower index, so the choice is a
    pure function of the detections.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[0] == 0:
        return None
    w, h = image_size
    best, best_score = None, -np.inf
    near, near_dist = None, np.inf
    for i in range(keypoints.shape[0]):
        ok = scores[i, list(_UPPER_BODY)] > min_score
        if ok.sum() < 3:
            continue
        pts = keypoints[i, list(_UPPER_BODY)][ok]
        centre = pts.mean(axis=0)
        extent = float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))
        off = np.linalg.norm(centre - np.array([w / 2.0, h / 2.0])) / (0.5 * np.hypot(w, h))
        score = extent * max(0.0, 1.0 - off)
        if score > best_score:
            best, best_score = i, score
        if previous is not None:
            s_ok = scores[i, list(_SHOULDERS)] > min_score
            width = float(np.linalg.norm(keypoints[i, 5] - keypoints[i, 6])) if s_ok.all() else extent / 2.0
            d = float(np.linalg.norm(centre - previous))
            if d <= width and d < near_dist:
                near, near_dist = i, d
    return near if near is not None else best


def upper_body_centre(keypoints: np.ndarray, scores: np.ndarray, min_score: float = 0.3) -> np.ndarray | None:
    ok = np.asarray(scores)[list(_UPPER_BODY)] > min_score
    if ok.sum() < 3:
        return None
    return np.asarray(keypoints, dtype=np.float64)[list(_UPPER_BODY)][ok].mean(axis=0)


def wholebody_from_instances(
    per_frame: Sequence[tuple[np.ndarray, np.ndarray]],
    image_size: tuple[int, int],
    min_score: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Convert MMPose top-down results to one signer's COCO-WholeBody-133 points.

    ``per_frame`` holds, for each frame, ``(keypoints [N, 133, 2], keypoint_scores [N, 133])`` as MMPose's
    ``PoseDataSample.pred_instances`` gives them (N people, possibly 0). Returns points ``[T, 133, 2]`` and
    confidences ``[T, 133]``: the signer's scores (clipped to [0, 1]; MMPose's heatmap scores may exceed 1), all
    zeros in a frame without a person.
    """
    t = len(per_frame)
    data = np.zeros((t, 133, 2), dtype=np.float32)
    conf = np.zeros((t, 133), dtype=np.float32)
    previous = None
    for i, (kpts, scores) in enumerate(per_frame):
        kpts = np.asarray(kpts, dtype=np.float32).reshape(-1, 133, 2)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1, 133)
        j = select_signer(kpts, scores, image_size, previous, min_score)
        if j is None:
            continue
        data[i] = kpts[j]
        conf[i] = np.clip(scores[j], 0.0, 1.0)
        # A detected point with a score of exactly 0 would read as missing in pose-format: keep it present.
        conf[i][(conf[i] == 0) & np.isfinite(kpts[j]).all(axis=1)] = np.float32(1e-6)
        centre = upper_body_centre(kpts[j], scores[j], min_score)
        previous = centre if centre is not None else previous
    return data, conf


class MMPoseWholeBody(PoseEstimator):
    """COCO-WholeBody-133 with MMPose (top-down), optionally with an MMDetection person detector.

    Needs ``mmpose`` (+ ``mmcv``, ``mmengine``, ``torchvision``; ``mmdet`` for the detector), which ray_slt
    lists as the ``mmpose`` extra: install it on GPU images that provide mmcv's compiled ops.
    """

    name = MMPOSE_NAME

    def __init__(
        self,
        config: str,
        checkpoint: str,
        det_config: str | None = None,
        det_checkpoint: str | None = None,
        device: str = "cuda:0",
        det_score: float = 0.5,
        det_nms: float = 0.3,
        min_score: float = 0.3,
    ):
        try:
            import mmpose
            from mmpose.apis import inference_topdown, init_model
        except ImportError as e:
            raise RaySltError(
                "pose backend 'mmpose' needs MMPose >= 1.3 with mmcv, mmengine and torchvision "
                f"(pip install 'ray_slt[mmpose]' on a GPU image that provides mmcv): {e}"
            ) from None
        if not config or not checkpoint:
            raise RaySltError("pose backend 'mmpose' needs pose.mmpose.config and pose.mmpose.checkpoint")
        self._inference_topdown = inference_topdown
        self._model = init_model(config, checkpoint, device=device)
        self._detector = None
        if det_config:
            try:
                from mmdet.apis import inference_detector, init_detector
            except ImportError as e:
                raise RaySltError(f"pose.mmpose.det_config is set but MMDetection is missing: {e}") from None
            self._detector = init_detector(det_config, det_checkpoint, device=device)
            self._inference_detector = inference_detector
        self._versions = {"mmpose": mmpose.__version__}
        self.options = {
            "config": config,
            "checkpoint": checkpoint,
            "det_config": det_config,
            "det_checkpoint": det_checkpoint,
            "det_score": det_score,
            "det_nms": det_nms,
            "min_score": min_score,
        }

    def components(self) -> list:
        from pose_format.utils.cocowholebody133_header import cocowholebody_components

        return cocowholebody_components()

    def _person_boxes(self, bgr: np.ndarray) -> np.ndarray | None:
        if self._detector is None:
            return None
        from mmpose.evaluation.functional import nms

        pred = self._inference_detector(self._detector, bgr).pred_instances.cpu().numpy()
        boxes = np.concatenate([pred.bboxes, pred.scores[:, None]], axis=1)
        boxes = boxes[(pred.labels == 0) & (pred.scores > self.options["det_score"])]
        if len(boxes) == 0:
            return np.zeros((0, 4), dtype=np.float32)
        return boxes[nms(boxes, self.options["det_nms"]), :4]

    def estimate(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_frame = []
        for frame in frames:
            bgr = np.ascontiguousarray(frame[..., ::-1])  # MMPose/MMDet pipelines take BGR like cv2
            boxes = self._person_boxes(bgr)
            if boxes is not None and len(boxes) == 0:
                per_frame.append((np.zeros((0, 133, 2), np.float32), np.zeros((0, 133), np.float32)))
                continue
            results = self._inference_topdown(self._model, bgr, boxes, bbox_format="xyxy")
            kpts = [np.asarray(r.pred_instances.keypoints, dtype=np.float32) for r in results]
            scores = [np.asarray(r.pred_instances.keypoint_scores, dtype=np.float32) for r in results]
            per_frame.append(
                (np.concatenate(kpts).reshape(-1, 133, 2), np.concatenate(scores).reshape(-1, 133))
                if kpts
                else (np.zeros((0, 133, 2), np.float32), np.zeros((0, 133), np.float32))
            )
        h, w = frames.shape[1:3]
        return wholebody_from_instances(per_frame, (w, h), self.options["min_score"])

    def info(self) -> dict[str, Any]:
        return {"name": self.name, **self._versions, **self.options}


# ------------------------------------------------------------------------------------------ factories


def make_estimator(backend: str, options: dict[str, Any] | None = None) -> PoseEstimator:
    """An estimator by backend name (``mediapipe`` or ``mmpose``) with its options."""
    options = dict(options or {})
    if backend == "mediapipe":
        return MediaPipeHolistic(**options)
    if backend == "mmpose":
        return MMPoseWholeBody(**options)
    raise RaySltError(f"unknown pose backend {backend!r} (expected mediapipe, mmpose or none)")
