"""The synthetic corpora (see :mod:`ray_slt.data.synthetic`), generated under the root if absent, then read:
``synthetic`` (signed sentences with English translations) and ``synthetic_isolated`` (isolated signs with a
lexicon of their descriptions, ``lexicon.csv`` beside the table)."""

from __future__ import annotations

import json
import re

from pydantic import field_validator

from ray_slt import storage
from ray_slt.config import Schema
from ray_slt.data import synthetic
from ray_slt.data.adapters.base import (
    Adapter,
    ErrorReport,
    non_empty,
    parse_int,
    read_table,
    record,
    sample_id,
)
from ray_slt.data.manifest import canonical_split, make_row
from ray_slt.errors import DataError, RaySltError


class SyntheticOptions(Schema):
    """``train`` .. ``seed``: used only when the corpus does not exist under the root yet and is generated.
    ``sign_language``: the code its rows carry (ISO 639-3's local-use range qaa-qtz; default ``qsl``). Corpora
    of two seeds under two codes stand in for two sign languages (the same English sentences and glosses,
    different signs: each seed draws its own sign forms) for multilingual models; rows of a code other than
    ``qsl`` get it in their sample ids (``synthetic.qsb.syn00000``), so the two can be read as one source."""

    train: int = 600
    dev: int = 60
    test: int = 60
    signers: int = 6
    seed: int = 0
    sign_language: str = "qsl"

    @field_validator("sign_language")
    @classmethod
    def _local_use(cls, v: str) -> str:
        if not re.fullmatch(r"q[a-t][a-z]", v):
            raise ValueError(f"sign_language {v!r}: a synthetic corpus takes a local-use code (qaa-qtz), never a "
                             "real language's")  # fmt: skip
        return v


class IsolatedOptions(Schema):
    """Used only when the corpus does not exist under the root yet and is generated."""

    classes: int = 60
    train: int = 6  # samples per sign and split
    dev: int = 2
    test: int = 2
    signers: int = 6
    seed: int = 0


class Synthetic(Adapter):
    name = "synthetic"
    description = "SYNTHETIC made-up sign language (COCO-WholeBody poses) for demos and learning tests"
    sign_language = "qsl"
    spoken_language = "en"
    Options = SyntheticOptions
    table = "synthetic.tsv"

    def generate(self, root: str, options) -> None:
        spec = options.model_dump(exclude={"sign_language"})
        synthetic.generate(root, synthetic.SyntheticSpec(**spec), progress=True)

    def read(self, root, options, report: ErrorReport, splits=("train", "dev", "test")) -> list[dict]:
        table = storage.join(root, self.table)
        if not storage.exists(table):
            self.generate(root, options)
        else:
            _check_existing(root, options)
        rows = []
        language = getattr(options, "sign_language", self.sign_language)
        prefix = "" if language == self.sign_language else f"{language}."
        for line, cols, fields in read_table(table, "\t", synthetic.TSV_COLUMNS):
            with report.guard(table, line):
                rec = record(cols, fields)
                split = canonical_split(rec["split"])
                if split not in splits:
                    continue
                rows.append(
                    make_row(
                        sample_id=sample_id(self.name, prefix + non_empty(rec, "name")),
                        dataset=self.name,
                        split=split,
                        sign_language=language,
                        spoken_language=self.spoken_language,
                        pose_uri=storage.join(root, non_empty(rec, "pose")),
                        fps=synthetic.FPS,
                        num_frames=parse_int(rec["num_frames"], "num_frames"),
                        text=non_empty(rec, "text"),
                        gloss=non_empty(rec, "gloss"),
                        signer=rec["signer"] or None,
                        meta={"synthetic": True, "generator_version": synthetic.GENERATOR_VERSION},
                    )
                )
        return rows


class SyntheticIsolated(Synthetic):
    name = "synthetic_isolated"
    description = "SYNTHETIC isolated signs composed from phonological parameters, with a lexicon of descriptions"
    Options = IsolatedOptions
    table = synthetic.ISOLATED_TSV

    def generate(self, root: str, options) -> None:
        synthetic.generate_isolated(root, synthetic.IsolatedSpec(**options.model_dump()), progress=True)


def _check_existing(root: str, options: SyntheticOptions) -> None:
    """An existing corpus is read as it is; options given explicitly must match how it was generated."""
    asked = {k: getattr(options, k) for k in sorted(options.model_fields_set) if k != "sign_language"}
    if not asked:
        return
    path = storage.join(root, "synthetic.json")
    try:
        made = json.loads(storage.read_text(path))["spec"]
    except (RaySltError, ValueError, KeyError, TypeError):
        raise DataError("the corpus under the root has no readable synthetic.json (its spec)", path) from None
    differ = [f"{k}: {made.get(k)!r} there, {v!r} asked" for k, v in asked.items() if made.get(k) != v]
    if differ:
        raise DataError(
            f"the root already holds a synthetic corpus made with other options ({'; '.join(differ)}); "
            "give another root, or remove that corpus to generate this one",
            root,
        )
