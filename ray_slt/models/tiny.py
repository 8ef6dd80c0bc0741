"""Tokenizers trained on corpus texts and small randomly initialised causal LMs of real architecture classes.

These run the whole translator on a CPU (laptop demo, tiny configs, tests). They are ordinary transformers
objects: the tokenizer is a ``PreTrainedTokenizerFast`` (``save_pretrained``/``from_pretrained``), the LM a
``Qwen3ForCausalLM``/``Qwen2ForCausalLM`` built from its config class, so every code path that handles them
also handles real checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from ray_slt.models.config import TinyLMConfig

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 4000, kind: str = "bpe", min_frequency: int = 1
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE or a WordPiece tokenizer on ``texts``.

    Special tokens: ``<pad>`` (id 0), ``<s>``, ``</s>``, ``<unk>``. No special tokens are added on encoding;
    callers append ``</s>`` where a sequence ends. BPE training is deterministic for the same texts in the
    same order; WordPiece training is not across processes (the `tokenizers` trainer's vocabulary varies with
    its hash-map order, even given a sorted initial alphabet): train it once and save it where runs must agree.
    """
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("train_tokenizer needs at least one non-empty text")
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS, show_progress=False
        )
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; use 'bpe' or 'wordpiece'")
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK)


def train_word_tokenizer(texts: Iterable[str], min_count: int = 1) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer (one id per distinct word, e.g. per gloss); rare words -> ``<unk>``."""
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("train_word_tokenizer needs at least one non-empty text")
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece()  # joins words with spaces
    trainer = trainers.WordLevelTrainer(min_frequency=min_count, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK)


def build_tiny_lm(
    tokenizer: PreTrainedTokenizerFast, arch: str = "qwen3", cfg: TinyLMConfig | None = None, seed: int = 0
) -> PreTrainedModel:
    """A randomly initialised ``Qwen3ForCausalLM`` or ``Qwen2ForCausalLM`` sized by ``cfg`` for ``tokenizer``.

    The initialisation depends only on ``seed`` (the global RNG is left untouched).
    """
    cfg = cfg or TinyLMConfig()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        initializer_range=cfg.init_std,
    )
    if arch == "qwen3":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        config, cls = Qwen3Config(head_dim=cfg.hidden // cfg.heads, **common), Qwen3ForCausalLM
    elif arch == "qwen2":
        from transformers import Qwen2Config, Qwen2ForCausalLM

        config, cls = Qwen2Config(**common), Qwen2ForCausalLM
    else:
        raise ValueError(f"unknown tiny LM architecture {arch!r}; use 'qwen3' or 'qwen2'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()
