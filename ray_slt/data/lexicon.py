"""Lexicons: ``gloss -> lexical description`` per sign language, in one table format every consumer reads.

A lexicon is a table (CSV with a header, or Parquet) with the columns

==================  ======================================================================================
``gloss``           the sign's gloss (as the corpus spells it, once :func:`match_glosses` maps it)
``description``     a dictionary-style description; :func:`fragments` splits it at punctuation, one
                    phonological parameter per fragment (the paper's fragment level)
``language``        the sign language (ISO 639-3: ``ase``, ``qsl``, ...)
``source``          where the description comes from (``asl-lex``, ``user``, ``vlm:<model>``, ``synthetic``)
``entry_id``        optional: the source's own id (ASL-LEX ``EntryID``)
``aliases``         optional: other names of the sign, ``|``-separated (ASL-LEX's lemma and SignBank ids),
                    matched when no entry's gloss matches
``iconicity_type``  optional: ASL-LEX's ``Arbitrary``/``Perceptual``/``Pantomimic``/``Both``
``iconicity``       optional: ASL-LEX's mean iconicity rating (1-7)
``frequency``       optional: ASL-LEX's mean sign frequency rating (1-7)
``fields``          optional: the source's parameters as JSON (e.g. handshape, location) for similarity
==================  ======================================================================================

A user's table needs only ``gloss,description[,language]``. :func:`read_lexicon` names the file and line of any bad
row (missing column, empty field, a gloss twice for one language, bytes that are not UTF-8) and, with
``skip_bad``, keeps every good row and returns the bad ones. :func:`asl_lex_lexicon` renders ASL-LEX 2.0's
phonological coding into descriptions by the template documented there; :func:`match_glosses` maps a corpus's
glosses (e.g. WLASL's) onto a lexicon's and reports coverage (matched, unmatched, ambiguous).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ray_slt import storage
from ray_slt.errors import DataError

COLUMNS = ("gloss", "description", "language", "source", "entry_id", "aliases", "iconicity_type", "iconicity",
           "frequency", "fields")  # fmt: skip
REQUIRED = ("gloss", "description")
_FRAGMENT_SPLIT = re.compile(r"[,.;:!?]+")


@dataclass
class Entry:
    gloss: str
    description: str
    language: str = "und"
    source: str = "user"
    entry_id: str | None = None
    aliases: list[str] = field(default_factory=list)
    iconicity_type: str | None = None
    iconicity: float | None = None
    frequency: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def fragments(self) -> list[str]:
        return fragments(self.description)


def fragments(description: str) -> list[str]:
    """A description split at punctuation (commas, periods, semicolons, colons, ! and ?), as the paper splits
    them; empty pieces are dropped. A description without punctuation is one fragment."""
    parts = [p.strip() for p in _FRAGMENT_SPLIT.split(description)]
    return [p for p in parts if p] or [description.strip()]


def normalize_gloss(gloss: str) -> str:
    """Lower case, ``_``/``-``/spaces collapsed to one space, a trailing variant number (``about_2``) dropped."""
    g = re.sub(r"_\d+$", "", str(gloss).strip().lower())
    return re.sub(r"[\s_\-]+", " ", g).strip()


# ------------------------------------------------------------------------------------------ reading, writing


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {value!r}") from None
    return f if math.isfinite(f) else None


def _aliases(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    parts = value if isinstance(value, list) else str(value).split("|")
    return [str(a).strip() for a in parts if str(a).strip()]


def _entry(rec: Mapping[str, Any], default_language: str) -> Entry:
    for col in REQUIRED:
        if not str(rec.get(col) or "").strip():
            raise ValueError(f"empty {col}")
    raw_fields = rec.get("fields")
    if isinstance(raw_fields, str) and raw_fields.strip():
        try:
            raw_fields = json.loads(raw_fields)
        except ValueError as e:
            raise ValueError(f"fields is not JSON ({e})") from None
    return Entry(
        gloss=str(rec["gloss"]).strip(),
        description=" ".join(str(rec["description"]).split()),
        language=str(rec.get("language") or default_language).strip(),
        source=str(rec.get("source") or "user").strip(),
        entry_id=str(rec["entry_id"]).strip() if rec.get("entry_id") not in (None, "") else None,
        aliases=_aliases(rec.get("aliases")),
        iconicity_type=str(rec["iconicity_type"]).strip() if rec.get("iconicity_type") not in (None, "") else None,
        iconicity=_number(rec.get("iconicity")),
        frequency=_number(rec.get("frequency")),
        fields=dict(raw_fields or {}),
    )


def read_lexicon(uri: str, language: str = "und", skip_bad: bool = False) -> tuple[list[Entry], list[dict[str, Any]]]:
    """``(entries, bad rows)`` of a lexicon table (CSV or ``.parquet``). A bad row is a DataError naming the file
    and line, or, with ``skip_bad``, a record ``{line, reason}`` while every good row is kept. ``language`` is
    the default for rows without one."""
    if uri.endswith(".parquet"):
        import pyarrow.parquet as pq

        with storage.open_read(uri) as f:
            rows = pq.read_table(f).to_pylist()
        numbered = [(i + 1, r) for i, r in enumerate(rows)]
        header = list(rows[0]) if rows else list(REQUIRED)
    else:
        text = storage.decode_text(storage.read_bytes(uri), uri)
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        numbered = [(reader.line_num, r) for r in reader]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"a lexicon needs the columns {', '.join(REQUIRED)}; missing: {', '.join(missing)}", uri, 1)
    entries, bad, seen = [], [], {}
    for line, rec in numbered:
        try:
            if None in rec:  # csv.DictReader puts extra cells under None
                raise ValueError(f"{len(rec[None])} more cells than the header's {len(header)} columns")
            entry = _entry(rec, language)
            key = (entry.gloss.casefold(), entry.language)
            if key in seen:
                raise ValueError(f"gloss {entry.gloss!r} ({entry.language}) already on line {seen[key]}")
            seen[key] = line
            entries.append(entry)
        except ValueError as e:
            if not skip_bad:
                raise DataError(str(e), uri, line) from None
            bad.append({"source": uri, "line": line, "reason": str(e)})
    if not entries:
        raise DataError("the lexicon has no usable entry", uri)
    return entries, bad


def write_lexicon(entries: Iterable[Entry], uri: str) -> None:
    """Write a lexicon (CSV, or Parquet for a ``.parquet`` URI), atomically."""
    rows = []
    for e in entries:
        row = asdict(e)
        row["fields"] = json.dumps(row["fields"], sort_keys=True, ensure_ascii=False) if row["fields"] else ""
        row["aliases"] = "|".join(row["aliases"])
        rows.append(row)
    if uri.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        storage.write_bytes(uri, buf.getvalue())
        return
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    storage.write_text(uri, out.getvalue())


def as_mapping(entries: Iterable[Entry], language: str | None = None) -> dict[str, Entry]:
    """``{gloss: entry}`` (of one language when given)."""
    return {e.gloss: e for e in entries if language is None or e.language == language}


# ------------------------------------------------------------------------------------------------ ASL-LEX

# ASL-LEX 2.0 codes -> words. Handshape codes (``open_b``, ``baby_o``, ``1``) are read as letter/number shapes.
_LOCATION = {
    "Neutral": "in the space in front of the body", "Head": "at the head", "Hand": "on the other hand",
    "Body": "on the body", "Arm": "on the arm", "Other": "at another place",
}  # fmt: skip
_MINOR = {
    "HeadTop": "at the top of the head", "Forehead": "at the forehead", "Eye": "at the eye",
    "CheekNose": "at the cheek or nose", "UpperLip": "at the upper lip", "Mouth": "at the mouth",
    "Chin": "at the chin", "UnderChin": "under the chin", "HeadAway": "beside the head", "Neck": "at the neck",
    "Shoulder": "at the shoulder", "Clavicle": "at the collarbone", "TorsoTop": "at the upper chest",
    "TorsoMid": "at the middle of the chest", "TorsoBottom": "at the stomach", "Waist": "at the waist",
    "Hip": "at the hip", "UpperArm": "on the upper arm", "ElbowFront": "at the inside of the elbow",
    "ElbowBack": "at the elbow", "ForearmBack": "on the back of the forearm",
    "ForearmFront": "on the front of the forearm", "ForearmUlnar": "on the little-finger side of the forearm",
    "WristBack": "at the back of the wrist", "WristFront": "at the inside of the wrist",
    "Palm": "on the palm of the other hand", "PalmBack": "on the back of the other hand",
    "FingerFront": "on the front of the other hand's fingers", "FingerBack": "on the back of the other hand's fingers",
    "FingerRadial": "on the index-finger side of the other hand",
    "FingerUlnar": "on the little-finger side of the other hand", "FingerTip": "at the other hand's fingertips",
    "Heel": "at the heel of the other hand", "HandAway": "near the other hand", "Radial": "at the thumb side",
    "Ulnar": "at the little-finger side",
}  # fmt: skip
_MOVEMENT = {
    "Straight": "moving in a straight line", "Curved": "moving in an arc", "Circular": "moving in a circle",
    "Z-shaped": "moving in a zigzag", "BackAndForth": "moving back and forth", "X-shaped": "moving in an X",
    "Other": "with another movement",
}  # fmt: skip
_SIGN_TYPE = {
    "OneHanded": "one-handed", "SymmetricalOrAlternating": "both hands moving alike or alternating",
    "AsymmetricalSameHandshape": "the other hand still with the same handshape",
    "AsymmetricalDifferentHandshape": "the other hand still with a different handshape",
    "DominanceViolation": "the other hand with a different handshape (dominance violation)",
    "SymmetryViolation": "both hands moving with different handshapes (symmetry violation)",
}  # fmt: skip
_FINGERS = {"i": "index", "m": "middle", "r": "ring", "p": "little", "t": "thumb"}
_FLEXION = {"FullyOpen": "fully open", "Curved": "curved", "Flat": "flat", "Bent": "bent",
            "FullyClosed": "fully closed", "Stacked": "stacked", "Crossed": "crossed"}  # fmt: skip


def _present(v: Any) -> bool:
    missing = ("", "NA", "N/A", "None", "nan", "NaN")
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v).strip() not in missing


def _handshape(code: Any) -> str:
    """``open_b`` -> ``open B handshape``, ``1`` -> ``1 handshape``: one-letter parts are letter shapes."""
    words = [w.upper() if len(w) == 1 else w for w in str(code).replace("_", " ").split()]
    return " ".join(words) + " handshape"


def _selected(code: Any) -> str:
    names = [_FINGERS[ch] for ch in str(code) if ch in _FINGERS]
    if not names:
        return ""
    if len(names) == 4 and "thumb" not in names:
        return "all four fingers selected"
    if names == ["thumb"]:
        return "the thumb selected"
    return "the " + " and ".join(names) + (" finger" if len(names) == 1 else " fingers") + " selected"


def asl_lex_fragments(rec: Mapping[str, Any], suffix: str = ".2.0") -> list[str]:
    """The fragments of one ASL-LEX morpheme (``suffix`` ``.2.0`` for the first, ``M2.2.0``... for later ones),
    in a fixed order, each one parameter: handshape, selected fingers, flexion, thumb, location, contact,
    movement (and repetition), sign type, non-dominant handshape. Uncoded parameters are left out."""
    get = lambda name: rec.get(f"{name}{suffix}")  # noqa: E731
    out = []
    if _present(get("Handshape")):
        out.append(_handshape(get("Handshape")))
    if _present(get("SelectedFingers")) and _selected(get("SelectedFingers")):
        out.append(_selected(get("SelectedFingers")))
    if _present(get("Flexion")):
        out.append(f"fingers {_FLEXION.get(str(get('Flexion')), str(get('Flexion')).lower())}")
    if _present(get("ThumbPosition")):
        out.append(f"thumb {str(get('ThumbPosition')).lower()}")
    major, minor = get("MajorLocation"), get("MinorLocation")
    if _present(minor) and str(minor) in _MINOR:
        out.append(_MINOR[str(minor)])
    elif _present(major):
        out.append(_LOCATION.get(str(major), f"at the {str(major).lower()}"))
    if _present(get("Contact")) and str(get("Contact")) in ("1", "1.0", "True"):
        out.append("touching there")
    if _present(get("Movement")):
        move = _MOVEMENT.get(str(get("Movement")), f"moving {str(get('Movement')).lower()}")
        if _present(get("RepeatedMovement")) and str(get("RepeatedMovement")) in ("1", "1.0", "True"):
            move += " repeatedly"
        out.append(move)
    if _present(get("SignType")):
        out.append(_SIGN_TYPE.get(str(get("SignType")), str(get("SignType"))))
    nd = get("NonDominantHandshape")
    if (
        _present(nd)
        and str(nd) not in ("DominanceViolation", "SymmetryViolation")
        and str(get("SignType")) != "OneHanded"
    ):
        out.append(f"other hand in the {_handshape(nd)}")
    return out


def asl_lex_description(rec: Mapping[str, Any]) -> str:
    """The description of an ASL-LEX 2.0 entry: the first morpheme's fragments, then ``then ...`` groups for the
    later morphemes of compounds (``NumberOfMorphemes.2.0``), comma-separated and ending with a period.
    The template is fixed, so the same coding always gives the same sentence."""
    parts = asl_lex_fragments(rec)
    try:
        morphemes = int(float(rec.get("NumberOfMorphemes.2.0") or 1))
    except (TypeError, ValueError):
        morphemes = 1
    for k in range(2, min(morphemes, 6) + 1):
        later = asl_lex_fragments(rec, f"M{k}.2.0")
        if later:
            later[0] = "then " + later[0]
            parts += later
    if not parts:
        return ""
    text = ", ".join(parts)
    return text[0].upper() + text[1:] + "."


def _lemma_ids(rec: Mapping[str, Any]) -> list[str]:
    """ASL-LEX's other names of an entry: ``LemmaID``, ``SignBankLemmaID`` and ``SignBankAnnotationID``, split at
    ``/`` (``hurdle/trip``), without the entry's own id. SignBank's English translations are not used: they name
    related signs (``food`` -> ``apple``), not the sign itself."""
    out: list[str] = []
    own = normalize_gloss(rec["EntryID"])
    for col in ("LemmaID", "SignBankLemmaID", "SignBankAnnotationID"):
        if not _present(rec.get(col)):
            continue
        for a in re.split(r"\s*/\s*", str(rec[col]).strip()):
            if a and normalize_gloss(a) != own and a not in out:
                out.append(a)
    return out


def is_asl_lex(uri: str) -> bool:
    """Whether a file is ASL-LEX 2.0's sign data table (by its header's columns)."""
    if uri.endswith(".parquet"):
        return False
    with storage.open_read(uri) as f:
        head = f.read(65536)
    first = head.decode("utf-8", errors="replace").lstrip("\ufeff").split("\n", 1)[0]
    cols = {c.strip().strip('"') for c in first.split(",")}
    return {"EntryID", "Handshape.2.0", "MajorLocation.2.0"} <= cols


def asl_lex_lexicon(csv_uri: str) -> list[Entry]:
    """ASL-LEX 2.0 (``signdata-11-5-20.csv``) as a lexicon: one entry per sign (variants such as
    ``about_1``/``about_2`` are entries of their own; the four ``EntryID`` s that two different signs share get
    the next free variant number, ``bite`` and ``bite_2``, and keep ``entry_id`` and their ``Code``) with its
    description, iconicity type and rating, sign
    frequency rating and the coded parameters in ``fields``. Entries without any coded parameter are left out."""
    text = storage.decode_text(storage.read_bytes(csv_uri), csv_uri)
    reader = csv.DictReader(io.StringIO(text))
    for col in ("EntryID", "Handshape.2.0", "MajorLocation.2.0"):
        if col not in (reader.fieldnames or []):
            raise DataError(f"not the ASL-LEX 2.0 sign data table (no column {col})", csv_uri, 1)
    keys = ("Handshape", "SelectedFingers", "Flexion", "ThumbPosition", "MajorLocation", "MinorLocation",
            "Movement", "RepeatedMovement", "SignType", "NonDominantHandshape", "Contact")  # fmt: skip
    out, taken = [], set()
    for rec in reader:
        description = asl_lex_description(rec)
        if not description:
            continue
        fields = {k: rec[f"{k}.2.0"] for k in keys if _present(rec.get(f"{k}.2.0"))}
        if _present(rec.get("Code")):
            fields["Code"] = rec["Code"]
        entry_id = rec["EntryID"].strip()
        gloss, n = entry_id, 1
        while gloss.casefold() in taken:  # two signs under one EntryID (bite, drag, take_off, type)
            n += 1
            gloss = f"{entry_id}_{n}"
        taken.add(gloss.casefold())
        out.append(
            Entry(
                gloss=gloss,
                description=description,
                language="ase",
                source="asl-lex-2.0",
                entry_id=entry_id,
                aliases=_lemma_ids(rec),
                iconicity_type=rec["IconicityType"] if _present(rec.get("IconicityType")) else None,
                iconicity=_number(rec.get("Iconicity(M)")),
                frequency=_number(rec.get("SignFrequency(M)")),
                fields=fields,
            )
        )
    return out


# ------------------------------------------------------------------------------------------ gloss matching


def read_class_list(uri: str) -> list[str]:
    """An official class list, in order: one gloss per line, ``index<TAB>gloss`` lines (WLASL's
    ``wlasl_class_list.txt``), or AUTSL's ``ClassId,TR,EN`` table (the Turkish names, AUTSL rows' glosses)."""
    from ray_slt.data.adapters.autsl import CLASS_COLUMNS, read_classes

    text = storage.decode_text(storage.read_bytes(uri), uri)
    if [c.strip() for c in text.split("\n", 1)[0].split(",")] == list(CLASS_COLUMNS):
        return [c["tr"] for c in read_classes(uri)]
    out: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        gloss = line.split("\t")[-1].strip()
        if not gloss:
            raise DataError("empty gloss", uri, n)
        if gloss in out:
            raise DataError(f"gloss {gloss!r} occurs twice in the class list", uri, n)
        out.append(gloss)
    if not out:
        raise DataError("the class list is empty", uri)
    return out


def corpus_glosses(uri: str) -> list[str]:
    """The glosses of a corpus, for matching: a manifest's (``.parquet``: its ``gloss`` column's distinct values,
    first seen first), WLASL's ``WLASL_v0.3.json`` (its glosses, in class order) or a class list."""
    if uri.endswith(".parquet"):
        from ray_slt.data.manifest import read_manifest

        values = [g for g in read_manifest(uri).column("gloss").to_pylist() if g]
        if not values:
            raise DataError("the manifest's samples carry no gloss", uri)
        return list(dict.fromkeys(values))
    if uri.endswith(".json"):
        try:
            data = json.loads(storage.read_text(uri))
            return [str(e["gloss"]) for e in data]
        except (ValueError, KeyError, TypeError):
            raise DataError("not a WLASL_v0.3.json list of {gloss, instances}", uri) from None
    return read_class_list(uri)


@dataclass
class Coverage:
    """How a corpus's glosses map onto a lexicon: ``matched`` (corpus gloss -> lexicon gloss), ``unmatched``,
    ``ambiguous`` (corpus gloss -> every candidate; the first, the lowest variant number, is the one used) and
    ``by_alias`` (the matched glosses found through an entry's aliases, not its gloss)."""

    matched: dict[str, str]
    unmatched: list[str]
    ambiguous: dict[str, list[str]]
    by_alias: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        n = len(self.matched) + len(self.unmatched)
        return {
            "glosses": n,
            "matched": len(self.matched),
            "by_alias": len(self.by_alias),
            "unmatched": len(self.unmatched),
            "ambiguous": len(self.ambiguous),
            "coverage": round(len(self.matched) / n, 4) if n else 0.0,
        }


def _variant_key(gloss: str) -> tuple[int, str]:
    m = re.search(r"_(\d+)$", gloss)
    return (int(m.group(1)) if m else 0, gloss)


def match_glosses(corpus_glosses: Sequence[str], entries: Sequence[Entry]) -> Coverage:
    """Map each corpus gloss to a lexicon gloss by :func:`normalize_gloss` (case, ``_``/``-``/spaces, variant
    numbers): WLASL's ``thank you`` matches ASL-LEX's ``thank_you``, ``about`` matches ``about_1`` and
    ``about_2`` (ambiguous: the lowest variant is used and the ambiguity reported). A gloss that names no entry
    is looked up among the entries' aliases (WLASL's ``forget`` is ASL-LEX's ``forget_1``... by lemma)."""
    index: dict[str, list[str]] = {}
    alias_index: dict[str, list[str]] = {}
    for e in entries:
        index.setdefault(normalize_gloss(e.gloss), []).append(e.gloss)
        for a in e.aliases:
            alias_index.setdefault(normalize_gloss(a), []).append(e.gloss)
    matched, unmatched, ambiguous, by_alias = {}, [], {}, []
    for g in dict.fromkeys(corpus_glosses):
        key = normalize_gloss(g)
        candidates = sorted(set(index.get(key, [])), key=_variant_key)
        if not candidates and alias_index.get(key):
            candidates = sorted(set(alias_index[key]), key=_variant_key)
            by_alias.append(g)
        if not candidates:
            unmatched.append(g)
            continue
        matched[g] = candidates[0]
        if len(candidates) > 1:
            ambiguous[g] = candidates
    return Coverage(matched, unmatched, ambiguous, by_alias)


def corpus_lexicon(corpus_glosses: Sequence[str], entries: Sequence[Entry]) -> tuple[list[Entry], Coverage]:
    """The lexicon restated in the corpus's glosses (each matched corpus gloss with its lexicon entry's
    description), and the coverage report."""
    coverage = match_glosses(corpus_glosses, entries)
    by_gloss = {e.gloss: e for e in entries}
    out = []
    for g, lex_gloss in coverage.matched.items():
        e = by_gloss[lex_gloss]
        out.append(Entry(**{**asdict(e), "gloss": g, "entry_id": e.entry_id or lex_gloss}))
    return out, coverage
