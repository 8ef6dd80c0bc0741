"""The ``production`` protocol: produced pose sequences against the reference poses, by DTW-MJE
(:mod:`ray_slt.eval.dtw`) on Prompt2Sign's 50 joints in 3D (:mod:`ray_slt.features.prompt2sign`), each sequence
shoulder-normalised; plus how long the productions are against their references. The best checkpoint has the
lowest dev DTW.

A prediction: ``sample_id``, ``frames`` (produced, ``[T, 151]``: 150 coordinates + the counter) and ``reference``
(the same for the sample's own poses; ``ray-slt eval`` lifts them from the feature store's keypoints and samples
them in time as the producer's training frames were: ``frame_step``, ``max_frames``).

**Back-translation** (``back_translator``: any translator checkpoint the translation stages write, loaded through
the registry): the translator reads each production as a pose (brought back to the poses' own frame rate by linear
interpolation, ``frame_step`` x as many frames, since translators learn at that rate; its 50 joints' x, y put back
at their points of the 77-point layout, every other point missing: :func:`ray_slt.features.prompt2sign.to_layout77`)
and its output is scored against the sample's sentence with the shared metrics (``bt_bleu1``..``bt_bleu4``,
``bt_rouge_l``, ``bt_chrf``, the BLEU signature). The translator should have been trained on what productions carry
(``encoder.points: p2s50``: the same 49 points); it also reads the references through the same view
(``bt_ref_*``: what a perfect production would score, the ceiling of this translator). The paper reads its
productions back with a translator too, whose details it does not give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ray_slt.errors import DataError
from ray_slt.eval.dtw import DTWSettings, corpus_dtw
from ray_slt.eval.protocols import Protocol, Selection

#: Prompt2Sign's shoulders (left, right) in its 50-joint order
SHOULDERS = (5, 2)


def joints(frames: Any) -> np.ndarray:
    """``[T, 50, 3]`` of ``[T, 151]`` frames (the counter dropped)."""
    a = np.asarray(frames, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 151 or not len(a):
        raise DataError(f"a produced pose is [T >= 1, 151] frames, got {a.shape}")
    return a[:, :150].reshape(len(a), 50, 3)


class ProductionProtocol(Protocol):
    name = "production"
    predicts = "pose"
    selection = Selection("dtw", "min")

    def __init__(self, percentile: float = 90.0, frame_step: int = 1, max_frames: int | None = None,
                 back_translator: str | None = None, lang: str | None = None, batch_size: int = 16):  # fmt: skip
        self.percentile, self.frame_step, self.max_frames = percentile, frame_step, max_frames
        self.back_translator, self.lang, self.batch_size = back_translator, lang, batch_size
        self.settings = DTWSettings(fill="skip", trim=False, norm="shoulder", shoulders=SHOULDERS, label="p2s50")
        if back_translator is not None:
            from ray_slt.models.registry import predictor_class, resolve

            ref = resolve(back_translator)  # a bad path fails here, before any production
            cls = predictor_class(ref.kind)
            if cls.predicts != "text" or cls.requirements(ref)["inputs"] != "pose":
                raise DataError(f"back_translator {back_translator}: a {ref.kind} model that does not translate "
                                "poses")  # fmt: skip

    def prediction(self, sample: Mapping[str, Any], output: Mapping[str, Any]) -> dict[str, Any]:
        from ray_slt.models.producer import model_frames, reference_frames

        if sample.get("keypoints") is None:
            raise DataError(f"sample {sample.get('sample_id')!r} has no poses to compare a production with")
        ref = model_frames(reference_frames(sample, self.percentile), self.frame_step, self.max_frames)
        return {"sample_id": str(sample["sample_id"]), "frames": output["frames"], "reference": ref.round(5).tolist(),
                "text": sample.get("text")}  # fmt: skip

    def score(self, predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not predictions:
            raise DataError("no predictions to score")
        produced = [joints(p["frames"]) for p in predictions]
        refs = [joints(p["reference"]) for p in predictions]
        report = corpus_dtw(produced, refs, self.settings)
        ratio = float(np.mean([len(a) / len(b) for a, b in zip(produced, refs)]))
        out = {"dtw": report["dtw"], "length_ratio": ratio, "n": report["n"], "dtw_signature": report["dtw_signature"]}
        if self.back_translator is not None:
            out.update(self.back_translate(predictions, produced, refs))
        return out

    def back_translate(self, predictions, produced: list[np.ndarray], refs: list[np.ndarray]) -> dict[str, Any]:
        """``bt_*``: the back-translator's reading of the productions scored against the sentences; ``bt_ref_*``:
        its reading of the references (see the module docstring)."""
        from ray_slt.eval.metrics import corpus_scores
        from ray_slt.features.prompt2sign import to_layout77, to_length
        from ray_slt.models.registry import load_predictor

        texts = [p.get("text") for p in predictions]
        missing = [str(p["sample_id"]) for p, t in zip(predictions, texts) if not isinstance(t, str)]
        if missing:
            raise DataError(f"back-translation needs each sample's sentence; none for {', '.join(missing[:5])}")
        translator = load_predictor(self.back_translator)
        try:

            def read(poses: list[np.ndarray]) -> list[str]:
                hyps: list[str] = []
                for i in range(0, len(poses), self.batch_size):
                    batch = []
                    for k, joints in enumerate(poses[i : i + self.batch_size]):
                        # back at the poses' own rate, which translators are trained at (frame_step x)
                        joints = to_length(joints, (len(joints) - 1) * self.frame_step + 1)
                        xy, valid = to_layout77(joints)
                        batch.append({"sample_id": str(i + k), "keypoints": xy, "keypoints_valid": valid,
                                      "num_frames": len(xy)})  # fmt: skip
                    hyps += [o["text"] for o in translator.predict(batch)]
                return hyps

            hyps, ref_hyps = read(produced), read(refs)
        finally:
            translator.close()
        for p, h in zip(predictions, hyps):  # kept with the predictions (written to predictions.jsonl)
            p["back_translation"] = h  # type: ignore[index]
        keys = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf")
        got, ceiling = corpus_scores(hyps, texts, lang=self.lang), corpus_scores(ref_hyps, texts, lang=self.lang)
        return {**{f"bt_{k}": got[k] for k in keys}, **{f"bt_ref_{k}": ceiling[k] for k in keys},
                "bt_bleu_signature": got["bleu_signature"], "back_translator": translator.model_id}  # fmt: skip

    def dev_metrics(self, scores: Mapping[str, Any]) -> dict[str, Any]:
        return {k: scores[k] for k in ("dtw", "length_ratio", "bt_bleu4", "bt_rouge_l") if k in scores}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dtw_signature": self.settings.signature(),
                "back_translator": self.back_translator}  # fmt: skip
