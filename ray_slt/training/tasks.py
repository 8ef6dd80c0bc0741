"""The translator tasks: ``sft`` (stage 2: sign encoder + projector + LLM, LoRA or full), ``pretrain`` (stage 1)
``text2gloss`` (the same model read the other way: a sentence in, glosses out; SignLLM's Prompt2LangGloss) and
``textlm`` (a language model of the sentences or the glosses alone: the ``log p(y)`` term of re-ranking).

Both read samples from a feature store (``data.features``, the output of ``ray-slt extract``); ``sft`` with a
gloss encoder can also read a manifest (``data.manifest``: the gloss -> text setting needs no features).
See :mod:`ray_slt.training.task` for the contract they implement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ray_slt.errors import ConfigError
from ray_slt.features.source import FEATURE_COLUMNS, POSE_COLUMNS, SampleSource, decode_rows
from ray_slt.models.config import PretrainConfig, SFTConfig, Text2GlossConfig, TextLMConfig
from ray_slt.training.task import Batch, Rows, SupervisedTask, TranslatorTask

#: What a text -> gloss model reads of a sample (a feature store's poses are not read).
TEXT_COLUMNS = ("sample_id", "split", "spoken_language", "text", "gloss")


def source_of(cfg, columns) -> SampleSource:
    """The run's samples (``data.features`` or ``data.manifest``) with the training config's split limits."""
    d = cfg.data
    return SampleSource(d.features, d.manifest, columns, {d.train_split: d.limit_train, d.dev_split: d.limit_dev})


class SourcedTask(SupervisedTask):
    """A supervised stage whose samples come from ``data.features`` or ``data.manifest`` (:func:`source_of`): its
    train and dev datasets (dev only when something evaluates it) and the training split's size. Subclasses say
    which ``columns`` they read, or override ``source``."""

    def source(self) -> SampleSource:
        return source_of(self.cfg, self.columns())

    def columns(self) -> list[str]:
        return list(POSE_COLUMNS)

    def datasets(self) -> dict[str, Any]:
        src = self.source()
        out = {"train": src.dataset(self.cfg.data.train_split)}
        if self.cfg.eval.every_epochs or self.cfg.eval.at_start:
            out["dev"] = src.dataset(self.cfg.data.dev_split)
        return out

    def num_train_samples(self) -> int:
        return self.source().count(self.cfg.data.train_split)

    def collator(self, model) -> Callable[[Rows], Batch]:
        """The model's own collator over decoded rows."""
        collate = model.collator()

        def fn(rows: Rows) -> Batch:
            return collate(decode_rows(rows))

        return fn


class _TranslatorTask(SourcedTask, TranslatorTask):
    """What the two translator stages share: data source and collation."""


class SFTTask(_TranslatorTask):
    """Stage 2 (RVLF SFT): skeleton or gloss encoder -> projector -> causal LM (LoRA, or in full when random)."""

    stage = "sft"
    section: ClassVar = SFTConfig

    def columns(self) -> list[str]:
        fusion = self.cfg.sft.fusion
        cols = list(POSE_COLUMNS)
        if fusion.face or fusion.hand:
            cols += list(FEATURE_COLUMNS)
        return cols

    def source(self) -> SampleSource:
        if self.cfg.data.manifest is not None and self.cfg.sft.encoder.type != "gloss":
            raise ConfigError("data.manifest carries no pose features: use data.features or a gloss encoder")
        return super().source()

    def fresh(self):
        from ray_slt.models.sft import build_translator

        texts, glosses = self.source().texts(self.cfg.data.train_split)
        if self.cfg.sft.lowercase:
            texts = [t.lower() for t in texts]
        return build_translator(self.cfg.sft, texts=texts, glosses=glosses or None, seed=self.cfg.optim.seed)

    def protocol_options(self) -> dict[str, Any]:
        return {**super().protocol_options(), **({"lowercase": True} if self.cfg.sft.lowercase else {})}

    def collator(self, model) -> Callable[[Rows], Batch]:
        if not self.cfg.sft.lowercase:
            return super().collator(model)
        collate = model.collator()

        def fn(rows: Rows) -> Batch:
            return collate([{**r, "text": r["text"].lower()} if isinstance(r.get("text"), str) else r
                            for r in decode_rows(rows)])  # fmt: skip

        return fn

    def loss(self, model, batch: Batch):
        out = model(batch)
        return out.loss, {}

    def generate(self, model, batch: Batch, num_beams=None, max_new_tokens=None, synced_gpus=False) -> list[str]:
        return model.generate(batch, num_beams=num_beams, max_new_tokens=max_new_tokens, synced_gpus=synced_gpus)

    def param_groups(self, model) -> list[dict[str, Any]]:
        from ray_slt.models.sft import param_groups

        return param_groups(model)

    def save(self, model, uri: str) -> None:
        from ray_slt.models.checkpoint import save_translator

        save_translator(model, uri)

    @classmethod
    def load(cls, uri: str, trainable: bool = False):
        from ray_slt.models.checkpoint import load_translator

        return load_translator(uri, trainable=trainable)


class PretrainTask(_TranslatorTask):
    """Stage 1 (RVLF pretraining): token-level contrastive loss + the text decoder's translation loss.

    Its dev evaluation decodes with the stage-1 text decoder, so ``dev_bleu4`` measures the alignment too."""

    stage = "pretrain"
    section: ClassVar = PretrainConfig

    def source(self) -> SampleSource:
        if self.cfg.data.manifest is not None:
            raise ConfigError("stage 1 pretraining reads poses: set data.features (a feature store)")
        return super().source()

    def fresh(self):
        from ray_slt.models.pretrain import build_pretrain_model

        texts, _ = self.source().texts(self.cfg.data.train_split)
        return build_pretrain_model(self.cfg.pretrain, texts=texts, seed=self.cfg.optim.seed)

    def loss(self, model, batch: Batch):
        out = model(batch)
        logs = {k: float(getattr(out, k).detach()) for k in ("loss_con", "loss_slt")}
        return out.loss, logs

    def generate(self, model, batch: Batch, num_beams=None, max_new_tokens=None, synced_gpus=False) -> list[str]:
        return model.translate(batch, num_beams=num_beams, max_new_tokens=max_new_tokens, synced_gpus=synced_gpus)

    def param_groups(self, model) -> list[dict[str, Any]]:
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"name": "all", "params": params, "lr": self.cfg.optim.lr, "weight_decay": self.cfg.optim.weight_decay}]

    def save(self, model, uri: str) -> None:
        from ray_slt.models.checkpoint import save_pretrain

        save_pretrain(model, uri)

    @classmethod
    def load(cls, uri: str, trainable: bool = False):
        from ray_slt.models.checkpoint import load_pretrain

        model = load_pretrain(uri)
        return model.train() if trainable else model


class Text2GlossTask(SFTTask):
    """Text -> gloss (:mod:`ray_slt.models.text2gloss`): the SFT translator with a token encoder over the words of
    the (template-wrapped) sentence, writing (language-tagged) glosses; scored by the ``gloss`` protocol on the
    reference glosses, tags stripped. Reads a manifest or a feature store's text columns."""

    stage = "text2gloss"
    section: ClassVar = Text2GlossConfig
    protocol: ClassVar[str] = "gloss"

    def protocol_options(self) -> dict[str, Any]:
        return {}

    def columns(self) -> list[str]:
        return [*TEXT_COLUMNS, "sign_language"]

    def source(self) -> SampleSource:
        return source_of(self.cfg, self.columns())

    def fresh(self):
        """A new model whose vocabularies are the training rows'; a multilingual one (``tag: auto``) records the
        languages of those rows in its config (what it writes, and what a request may ask for)."""
        from ray_slt.models.langgloss import languages_of
        from ray_slt.models.sft import build_translator
        from ray_slt.models.text2gloss import vocabulary_texts

        c = self.cfg.text2gloss
        rows = list(self.source().samples(self.cfg.data.train_split))
        if c.tag == "auto":
            c = c.model_copy(update={"languages": languages_of(rows, c.languages)})
        targets, inputs = vocabulary_texts(c, rows)
        return build_translator(c, texts=targets, glosses=inputs, seed=self.cfg.optim.seed)

    def collator(self, model) -> Callable[[Rows], Batch]:
        from ray_slt.models.text2gloss import training_pair

        collate, c = model.collator(), self.cfg.text2gloss

        def fn(rows: Rows) -> Batch:
            rows = decode_rows(rows)
            batch = collate([training_pair(c, r) for r in rows])
            batch["references"] = [" ".join(str(r["gloss"]).split()) for r in rows]
            batch["languages"] = [{"sign_language": r.get("sign_language")} for r in rows]
            return batch

        return fn

    def predict(self, model, batch: Batch, synced_gpus: bool = False) -> list[dict[str, Any]]:
        from ray_slt.models.text2gloss import row_tag, strip_tag

        e = self.cfg.eval
        hyps = self.generate(model, batch, num_beams=e.num_beams, max_new_tokens=e.max_new_tokens,
                             synced_gpus=synced_gpus)  # fmt: skip
        c, rows = model.cfg, zip(batch["sample_ids"], hyps, batch["references"], batch["languages"])
        return [{"sample_id": str(i), "hypothesis": strip_tag(h, row_tag(c, lang)), "reference": r}
                for i, h, r, lang in rows]  # fmt: skip

    def save(self, model, uri: str) -> None:
        from ray_slt.models.checkpoint import save_translator

        save_translator(model, uri, kind="text2gloss")


class TextLMTask(SourcedTask):
    """A language model of one column (``textlm.column``: ``text`` or ``gloss``) of a manifest or feature store
    (:mod:`ray_slt.models.textlm`), trained with next-token cross-entropy; scored by the ``lm`` protocol (dev
    perplexity, lower is better)."""

    stage = "textlm"
    section: ClassVar = TextLMConfig
    protocol: ClassVar[str] = "lm"

    def columns(self) -> list[str]:
        return list(TEXT_COLUMNS)

    def fresh(self):
        from ray_slt.models.textlm import build_textlm

        column = self.cfg.textlm.column
        texts = [str(r[column]) for r in self.source().samples(self.cfg.data.train_split)
                 if isinstance(r.get(column), str) and r[column].strip()]  # fmt: skip
        if not texts:
            raise ConfigError(f"the training split has no {column!r} to learn a language model of")
        return build_textlm(self.cfg.textlm, texts=texts, seed=self.cfg.optim.seed)

    def loss(self, model, batch: Batch):
        return model(batch), {}

    def predict(self, model, batch: Batch, synced_gpus: bool = False) -> list[dict[str, Any]]:
        lps, counts = model.sequence_logprobs(batch)
        return [{"sample_id": i, "logprob": float(lp), "tokens": int(n)}
                for i, lp, n in zip(batch["sample_ids"], lps.tolist(), counts.tolist())]  # fmt: skip

    def param_groups(self, model) -> list[dict[str, Any]]:
        c = self.cfg.textlm
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"name": "lm", "params": params, "lr": c.lr, "weight_decay": c.weight_decay}]

    def save(self, model, uri: str) -> None:
        from ray_slt.models.checkpoint import save_textlm

        save_textlm(model, uri)

    @classmethod
    def load(cls, uri: str, trainable: bool = False):
        from ray_slt.models.checkpoint import load_textlm

        return load_textlm(uri, trainable=trainable)
