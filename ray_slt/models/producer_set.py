"""SignLLM as served: text in, a pose out, for several sign languages (paper 5, Sec. 3.2-3.3).

A **producer set** is a model directory (kind ``producer_set``) holding, per sign language (ISO 639-3: ``gsg``,
``ase``, ...), one chain:

    sentence --[text -> gloss model (optional; stage text2gloss)]--> glosses --[producer (stage produce)]--> pose

- **MLSF** (multi-language switching): each language has its own independent producer; adding a language copies
  its models into ``languages/{code}/`` and rewrites only the set's two index files, so the others' files stay
  byte-identical (no retraining, no change to them); removing one deletes only its directory.
- **Prompt2LangGloss**: a language's chain starts with a text -> gloss model, trained with prompt templates and
  language-tagged glosses (:mod:`ray_slt.models.text2gloss`); its output is what the producer reads. A producer
  trained on sentences (``produce.input: text``) needs no such front and must not get one. The paper's **single
  shared model** is a multilingual text -> gloss model and a multilingual producer (both ``tag: auto``: one
  model writes, the other reads, the glosses of every language with its tag, :mod:`ray_slt.models.langgloss`):
  each language of the set that uses them points at one shared copy (``shared/{part}-{k}/``, kept while a
  language uses it), and the request's sign language is passed to both. A shared model must know the language
  it is added for. Shared and per-language parts mix freely (a shared text -> gloss front before one language's
  own producer).

Layout::

    {set}/producer_set.json         format, version, languages: {code: {spoken, producer, text2gloss, added}}
    {set}/languages/{code}/producer/      a copy of the producer's model directory (its own MANIFEST.json)
    {set}/languages/{code}/text2gloss/    a copy of the text -> gloss model directory, when the chain has one
    {set}/shared/{part}-{k}/        a copy of a multilingual model, used by every language pointing at it
    {set}/MANIFEST.json             kind producer_set, every file above; written last
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ray_slt import storage
from ray_slt.errors import ConfigError, DataError, StorageError
from ray_slt.models.predictor import Predictor
from ray_slt.models.registry import MANIFEST, ModelRef, copy_model, read_manifest, resolve

SET_FILE = "producer_set.json"
FORMAT, VERSION = "ray_slt.producer_set", 1
KIND = "producer_set"
#: a sign language code: ISO 639-3 (three lower-case letters), as the manifests record them
CODE = re.compile(r"^[a-z]{3}$")
#: a spoken language: a BCP-47 primary tag with optional subtags (``de``, ``en``, ``en-US``)
SPOKEN = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def read_set(uri: str) -> dict[str, Any]:
    """The index of the producer set at ``uri`` (an empty one when nothing is there yet)."""
    index = storage.join(uri, SET_FILE)
    if not storage.exists(index):
        if storage.exists(storage.join(uri, MANIFEST)):
            raise StorageError(f"{uri}: a model directory, but not a producer set (no {SET_FILE})")
        return {"format": FORMAT, "version": VERSION, "languages": {}}
    data = json.loads(storage.read_text(index))
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise StorageError(f"{uri}: not a {FORMAT} v{VERSION} directory")
    return data


def _write(uri: str, index: dict[str, Any]) -> None:
    """The index, then the manifest listing every file of every language (written last: a set being changed
    never looks complete)."""
    storage.remove(storage.join(uri, MANIFEST))
    storage.write_text(storage.join(uri, SET_FILE), json.dumps(index, indent=1, ensure_ascii=False))
    files = [{"path": SET_FILE, "size": storage.size(storage.join(uri, SET_FILE))}]
    done: set[str] = set()  # a shared part is listed once
    for _, entry in sorted(index["languages"].items()):
        for part in ("producer", "text2gloss"):
            if entry.get(part) is None or entry[part] in done:
                continue
            rel = entry[part]
            done.add(rel)
            sub = storage.join(uri, *rel.split("/"))
            listed = read_manifest(sub)["files"]
            files += [{"path": f"{rel}/{f['path']}", "size": f["size"]} for f in listed]
            files.append({"path": f"{rel}/{MANIFEST}", "size": storage.size(storage.join(sub, MANIFEST))})
    storage.write_text(storage.join(uri, MANIFEST), json.dumps({"kind": KIND, "files": files}, indent=1))


def _check_model(ref: ModelRef, kind: str, what: str) -> None:
    if ref.kind != kind:
        raise ConfigError(f"{what}: {ref.checkpoint} holds a {ref.kind} model, not a {kind}")


def model_languages(model: str, kind: str) -> list[str] | None:
    """The sign languages the saved multilingual model at ``model`` (a producer's or a text -> gloss model's
    directory) knows, from its JSON only; None for a one-language model."""
    meta = "producer.json" if kind == "producer" else "translator.json"
    cfg = json.loads(storage.read_text(storage.join(model, meta)))["config"]
    return list(cfg.get("languages") or []) if cfg.get("tag") == "auto" else None


def _place(uri: str, index: dict[str, Any], code: str, part: str, ref: ModelRef) -> str:
    """Where part ``part`` of language ``code`` goes in the set (a path relative to it), copying it there when
    it is not yet: a one-language model under ``languages/{code}/``; a multilingual one under ``shared/``, the
    copy another language already uses when it came from the same checkpoint with the same files."""
    if model_languages(ref.model, part) is None:
        rel = f"languages/{code}/{part}"
    else:
        source = read_manifest(ref.model)
        for other in index["languages"].values():
            rel = other.get(part) or ""
            same_source = rel.startswith("shared/") and other.get("from", {}).get(part) == ref.checkpoint
            if same_source and read_manifest(storage.join(uri, *rel.split("/"))) == source:
                return rel
        taken = {e.get(p) for e in index["languages"].values() for p in ("producer", "text2gloss")}
        rel = next(f"shared/{part}-{k}" for k in range(len(taken) + 1) if f"shared/{part}-{k}" not in taken)
        storage.remove(storage.join(uri, *rel.split("/")), recursive=True)  # a leftover of an interrupted add
    copy_model(ref.model, storage.join(uri, *rel.split("/")))
    return rel


def _drop_unused(uri: str, index: dict[str, Any]) -> None:
    """Delete the shared copies no language of ``index`` points at any more."""
    used = {e.get(p) for e in index["languages"].values() for p in ("producer", "text2gloss")}
    if not storage.exists(storage.join(uri, "shared")):
        return
    for path in storage.listdir(storage.join(uri, "shared")):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if f"shared/{name}" not in used:
            storage.remove(storage.join(uri, "shared", name), recursive=True)


def add_language(
    uri: str,
    code: str,
    producer: str,
    text2gloss: str | None = None,
    spoken: Sequence[str] = (),
    replace: bool = False,
) -> dict[str, Any]:
    """Add sign language ``code`` to the set at ``uri`` (created when absent): ``producer`` and ``text2gloss``
    are runs, checkpoints or model directories (as :func:`~ray_slt.models.registry.resolve` takes them);
    ``spoken``: the spoken languages its sentences may come in (empty: any). Returns the new index. Every
    check runs before anything is written."""
    from ray_slt.models.producer import producer_input

    if not CODE.match(code):
        raise ConfigError(f"sign language {code!r}: give its ISO 639-3 code (three lower-case letters: gsg, ase)")
    bad = [s for s in spoken if not SPOKEN.match(s)]
    if bad:
        raise ConfigError(f"spoken language {bad[0]!r}: give a BCP-47 tag (de, en, en-US)")
    index = read_set(uri)
    if code in index["languages"] and not replace:
        raise ConfigError(f"{uri} already has {code}; remove it first or replace it")
    p_ref = resolve(producer)
    _check_model(p_ref, "producer", "producer")
    reads = producer_input(p_ref.model)
    _check_knows(p_ref, "producer", code)
    t_ref = None
    if text2gloss is not None:
        t_ref = resolve(text2gloss)
        _check_model(t_ref, "text2gloss", "text2gloss")
        _check_knows(t_ref, "text2gloss", code)
        if reads != "gloss":
            raise ConfigError(f"the producer {p_ref.checkpoint} reads sentences: its chain takes no text -> gloss "
                              "model")  # fmt: skip
    elif reads == "gloss":
        raise ConfigError(f"the producer {p_ref.checkpoint} reads glosses: give the text -> gloss model that writes "
                          "them (Prompt2LangGloss's first stage)")  # fmt: skip
    storage.remove(storage.join(uri, MANIFEST))  # the set is incomplete until _write ends
    if code in index["languages"]:
        del index["languages"][code]
        storage.remove(storage.join(uri, "languages", code), recursive=True)
    index["languages"][code] = {
        "spoken": sorted(set(spoken)),
        "producer": _place(uri, index, code, "producer", p_ref),
        "text2gloss": _place(uri, index, code, "text2gloss", t_ref) if t_ref is not None else None,
        "from": {"producer": p_ref.checkpoint, "text2gloss": t_ref.checkpoint if t_ref else None},
        "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _drop_unused(uri, index)
    _write(uri, index)
    return index


def _check_knows(ref: ModelRef, part: str, code: str) -> None:
    """A multilingual model must know the language it is added for."""
    known = model_languages(ref.model, part)
    if known is not None and code not in known:
        raise ConfigError(f"the {part} {ref.checkpoint} is multilingual but does not know {code} (it knows: "
                          f"{', '.join(known)})")  # fmt: skip


def remove_language(uri: str, code: str) -> dict[str, Any]:
    """Remove sign language ``code`` from the set (its directory only); the others stay as they are."""
    index = read_set(uri)
    if code not in index["languages"]:
        raise ConfigError(f"{uri} has no {code} (it has: {', '.join(sorted(index['languages'])) or 'none'})")
    del index["languages"][code]
    storage.remove(storage.join(uri, MANIFEST))  # the set is incomplete until _write ends
    storage.remove(storage.join(uri, "languages", code), recursive=True)
    _drop_unused(uri, index)
    _write(uri, index)
    return index


def choose_language(languages: Mapping[str, Mapping[str, Any]], sign: str | None, spoken: str | None) -> str:
    """The sign language a request is produced in: ``sign`` when the set has it (the only one when ``sign`` is
    not given and the set has one); ``spoken``, when given, must be one its chain reads. DataError otherwise,
    naming what the set has."""
    known = sorted(languages)
    if sign is None or not str(sign).strip():
        if len(known) != 1:
            raise DataError(f"say which sign language to produce (sign_language: one of {', '.join(known)})")
        sign = known[0]
    sign = str(sign).strip()
    if sign not in languages:
        raise DataError(f"no producer for sign language {sign!r} (this set has: {', '.join(known)})")
    allowed = languages[sign].get("spoken") or []
    if spoken and allowed and str(spoken).strip() not in allowed:
        raise DataError(f"the {sign} producer reads {', '.join(allowed)}, not {str(spoken).strip()!r}")
    return sign


def _spoken(sample: Mapping[str, Any], language: Mapping[str, Any]) -> str | None:
    """The spoken language of a request: its own, else the only one its sign language's chain reads."""
    spoken = sample.get("spoken_language")
    if isinstance(spoken, str) and spoken.strip():
        return spoken.strip()
    allowed = language.get("spoken") or []
    return allowed[0] if len(allowed) == 1 else None


def _part(ref: ModelRef, rel: str) -> ModelRef:
    """The model directory ``rel`` inside the set ``ref``."""
    model = storage.join(ref.model, *rel.split("/"))
    return ModelRef(model=model, kind="", checkpoint=model)


class ProducerSetPredictor(Predictor):
    """A producer set (model kind ``producer_set``): samples with ``text`` (and ``sign_language``,
    ``spoken_language``) in; per sample the producer's output (``frames``, ``pose_b64``, ...) plus the
    ``gloss`` its text -> gloss model wrote (None for sentence-reading producers) and the ``sign_language``.
    Options: ``num_beams`` for the text -> gloss models (None: each model's)."""

    kind = KIND
    predicts = "pose"
    route = "produce"
    protocol = "production"
    inputs = "text"

    def __init__(self, ref: ModelRef, device: str = "cpu", model_id: str | None = None,
                 num_beams: int | None = None):  # fmt: skip
        from ray_slt.models.producer import ProducerPredictor
        from ray_slt.models.text2gloss import Text2GlossPredictor

        super().__init__(ref, device, model_id)
        self.index = read_set(ref.model)
        if not self.index["languages"]:
            raise StorageError(f"{ref.model}: the producer set has no language")
        self.chains: dict[str, tuple[Any, Any]] = {}
        loaded: dict[str, Any] = {}  # a shared part is loaded once
        for code, entry in sorted(self.index["languages"].items()):
            front = None
            if entry.get("text2gloss"):
                rel = entry["text2gloss"]
                if rel not in loaded:
                    loaded[rel] = Text2GlossPredictor(_part(ref, rel), device, num_beams=num_beams)
                front = loaded[rel]
            rel = entry["producer"]
            loaded[rel] = loaded.get(rel) or ProducerPredictor(_part(ref, rel), device)
            self.chains[code] = (front, loaded[rel])

    @classmethod
    def requirements(cls, ref: ModelRef) -> dict[str, Any]:
        read_set(ref.model)
        return {"inputs": "text", "needs_visual": False}

    def languages(self) -> dict[str, dict[str, Any]]:
        return {code: {"spoken": e["spoken"], "text2gloss": e.get("text2gloss") is not None,
                       "shared": e["producer"].startswith("shared/")}
                for code, e in self.index["languages"].items()}  # fmt: skip

    def info(self) -> dict[str, Any]:
        return {**super().info(), "languages": self.languages()}

    def settings(self) -> dict[str, Any]:
        return {code: {"producer": p.settings(), "text2gloss": f.settings() if f else None}
                for code, (f, p) in self.chains.items()}  # fmt: skip

    def protocol_defaults(self) -> dict[str, Any]:
        """The producers' time sampling, which must agree to score the set as one (else give them explicitly)."""
        defaults = [p.protocol_defaults() for _, p in self.chains.values()]
        if any(d != defaults[0] for d in defaults):
            return {}
        return defaults[0]

    def predict(self, samples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if not samples:
            return []
        langs = self.languages()
        missing = [str(s.get("sample_id", i)) for i, s in enumerate(samples) if not isinstance(s.get("text"), str)]
        if missing:
            raise DataError(f"a producer set reads sentences (text); samples without one: {', '.join(missing[:5])}")
        codes = [choose_language(langs, s.get("sign_language"), s.get("spoken_language")) for s in samples]
        out: list[dict[str, Any] | None] = [None] * len(samples)
        # one pass per chain: languages sharing their models are produced together, each sample in its own
        chains = {tuple(map(id, self.chains[code])): self.chains[code] for code in codes}
        for key, (front, producer) in chains.items():
            where = [i for i, c in enumerate(codes) if tuple(map(id, self.chains[c])) == key]
            rows = [{"sample_id": samples[i].get("sample_id"), "text": samples[i]["text"], "sign_language": codes[i],
                     "spoken_language": _spoken(samples[i], langs[codes[i]])} for i in where]  # fmt: skip
            fronts: list[dict[str, Any]] = [{} for _ in rows]
            if front is not None:
                # a front that writes nothing (an undertrained model) leaves the producer its unknown word
                fronts = front.predict(rows)
                unk = producer.model.tokenizer.unk_token
                rows = [{**r, "gloss": f["gloss"] or unk} for r, f in zip(rows, fronts)]
            for i, f, produced in zip(where, fronts, producer.predict(rows)):
                out[i] = {**produced, "gloss": f.get("gloss"), "sign_language": codes[i]}
                if "langgloss" in f:
                    out[i]["langgloss"] = f["langgloss"]
                if front is not None and not f["gloss"]:
                    out[i]["note"] = "the text -> gloss model wrote no glosses: produced from the unknown word"
        return out  # type: ignore[return-value]
