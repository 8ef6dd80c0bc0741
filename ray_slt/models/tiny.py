"""Tokenizers trained on corpus texts and small randomly initialised causal LMs of real architecture classes.

These run the whole translator on a CPU (laptop demo, tiny configs, tests). They are ordinary transformers
objects: the tokenizer is a ``PreTrainedTokenizerFast`` (``save_pretrained``/``from_pretrained``), the LM a
``Qwen3ForCausalLM``/``Qwen2ForCausalLM`` built from its config class, so every code path that handles them
also handles real checkpoints.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from ray_slt.models.config import TinyLMConfig

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 4000, kind: str = "bpe", min_frequency: int = 1
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE, a WordPiece or a word-level tokenizer on ``texts``.

    ``word``: one id per whitespace-separated word (glosses are words), the ``vocab_size`` most frequent (ties in
    alphabetical order) seen at least ``min_frequency`` times; the rest become ``<unk>``.

    Special tokens: ``<pad>`` (id 0), ``<s>``, ``</s>``, ``<unk>``. No special tokens are added on encoding;
    callers append ``</s>`` where a sequence ends. Both kinds are deterministic: the same texts give the same
    vocabulary in every process. (BPE comes from the `tokenizers` trainer. Its WordPiece trainer gave different
    vocabularies, token sets included, in different processes, so WordPiece is learnt by :func:`wordpiece_vocab`.)
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
        normalizer, pre_tokenizer = normalizers.NFC(), pre_tokenizers.BertPreTokenizer()
        words: Counter[str] = Counter()
        for text in texts:
            words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
        vocab = wordpiece_vocab(words, vocab_size, min_frequency, SPECIAL_TOKENS)
        tok = Tokenizer(models.WordPiece(vocab, unk_token=UNK))
        tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
        tok.add_special_tokens(SPECIAL_TOKENS)
        trainer = None
    elif kind == "word":
        counts = Counter(w for text in texts for w in text.split())
        ranked = sorted((w for w, c in counts.items() if c >= min_frequency), key=lambda w: (-counts[w], w))
        vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
        for w in ranked[: max(0, vocab_size - len(vocab))]:
            vocab.setdefault(w, len(vocab))
        tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.WhitespaceSplit(), decoders.WordPiece()
        tok.add_special_tokens(SPECIAL_TOKENS)
        trainer = None
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; use 'bpe', 'wordpiece' or 'word'")
    if trainer is not None:
        tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK)


def wordpiece_vocab(
    words: Counter[str], vocab_size: int, min_frequency: int = 1, special_tokens: Sequence[str] = ()
) -> dict[str, int]:
    """A WordPiece vocabulary learnt from word counts, the same way in every process.

    The procedure of the `tokenizers` WordPiece trainer, with a fixed order: a word starts as its first
    character followed by ``##``-prefixed continuation characters; the most frequent adjacent pair is merged again
    and again (ties go to the pair that sorts first), each merge adding one symbol, until ``vocab_size`` symbols
    (special tokens first, then the sorted characters) or no pair occurs ``min_frequency`` times.
    """
    words = {w: n for w, n in words.items() if w}
    split = {w: [w[0], *(f"##{c}" for c in w[1:])] for w in words}
    vocab = list(dict.fromkeys([*special_tokens, *sorted({s for parts in split.values() for s in parts})]))
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[str]] = {}
    for w, parts in split.items():
        for pair in itertools.pairwise(parts):
            pairs[pair] += words[w]
            where.setdefault(pair, set()).add(w)
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    known = set(vocab)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -neg:
            continue  # a stale entry: the pair's count changed since it was pushed
        if -neg < min_frequency:
            break
        a, b = pair
        merged = a + b[2:]
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
        changed: set[tuple[str, str]] = set()
        for w in sorted(where.pop(pair, ())):
            parts, n = split[w], words[w]
            for old in itertools.pairwise(parts):
                pairs[old] -= n
                changed.add(old)
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == a and parts[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            split[w] = out
            for new in itertools.pairwise(out):
                pairs[new] += n
                where.setdefault(new, set()).add(w)
                changed.add(new)
        for p in changed:
            if pairs[p] > 0:
                heapq.heappush(heap, (-pairs[p], p))
            else:
                pairs.pop(p, None)
    return {t: i for i, t in enumerate(vocab)}


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
    """A randomly initialised ``Qwen3ForCausalLM``, ``Qwen2ForCausalLM`` or ``GPT2LMHeadModel`` (causal), or
    ``MBartForConditionalGeneration`` or ``T5ForConditionalGeneration`` (encoder-decoder, ``cfg.layers`` in each
    stack), sized by ``cfg`` for ``tokenizer``. The decoder of an encoder-decoder starts from the token its
    class's training shift puts first: ``</s>`` for mBART (its shift moves the last token of the labels to the
    front), ``<pad>`` for T5. GPT-2 is the one causal class here with dropout on its residual stream (besides its
    embeddings and attention): what a from-scratch model of a small corpus leans on against memorising; it has
    learned absolute positions (``cfg.max_positions`` of them) and no grouped KV heads (``kv_heads`` is unused).

    The initialisation depends only on ``seed`` (the global RNG is left untouched).
    """
    cfg = cfg or TinyLMConfig()
    if arch in ("mbart", "t5"):
        return _tiny_seq2seq(tokenizer, arch, cfg, seed)
    if arch == "gpt2":
        return _tiny_gpt2(tokenizer, cfg, seed)
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
        raise ValueError(f"unknown tiny LM architecture {arch!r}; use 'qwen3', 'qwen2', 'gpt2', 'mbart' or 't5'")
    if cfg.dropout is not None:
        config.attention_dropout = cfg.dropout
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


def _tiny_gpt2(tokenizer: PreTrainedTokenizerFast, cfg: TinyLMConfig, seed: int) -> PreTrainedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    rate = {} if cfg.dropout is None else {k: cfg.dropout for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.max_positions, n_embd=cfg.hidden, n_layer=cfg.layers,
        n_head=cfg.heads, n_inner=cfg.intermediate, initializer_range=cfg.init_std, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **rate,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return model.eval()


def _tiny_seq2seq(tokenizer: PreTrainedTokenizerFast, arch: str, cfg: TinyLMConfig, seed: int) -> PreTrainedModel:
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    if arch == "mbart":
        from transformers import MBartConfig, MBartForConditionalGeneration

        config = MBartConfig(
            vocab_size=len(tokenizer), d_model=cfg.hidden, encoder_layers=cfg.layers, decoder_layers=cfg.layers,
            encoder_attention_heads=cfg.heads, decoder_attention_heads=cfg.heads, encoder_ffn_dim=cfg.intermediate,
            decoder_ffn_dim=cfg.intermediate, max_position_embeddings=cfg.max_positions, init_std=cfg.init_std,
            decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=None, scale_embedding=True,
            tie_word_embeddings=True, **ids,
        )  # fmt: skip
        if cfg.dropout is not None:
            config.dropout = config.attention_dropout = cfg.dropout
        cls = MBartForConditionalGeneration
    else:
        from transformers import T5Config, T5ForConditionalGeneration

        config = T5Config(
            vocab_size=len(tokenizer), d_model=cfg.hidden, d_kv=cfg.hidden // cfg.heads, d_ff=cfg.intermediate,
            num_layers=cfg.layers, num_decoder_layers=cfg.layers, num_heads=cfg.heads,
            initializer_factor=1.0, decoder_start_token_id=tokenizer.pad_token_id,  # T5 scales its own init
            feed_forward_proj="gated-gelu", tie_word_embeddings=True, **ids,
        )  # fmt: skip
        if cfg.dropout is not None:
            config.dropout_rate = cfg.dropout
        cls = T5ForConditionalGeneration
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()
