"""Tokenizers trained on PHOENIX-2014T sentences and tiny random causal LMs of real classes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from ray_slt.models.config import TinyLMConfig
from ray_slt.models.tiny import build_tiny_lm, train_tokenizer, train_word_tokenizer, wordpiece_vocab


def test_bpe_tokenizer_is_lossless_and_saves(phoenix_texts, tmp_path):
    tok = train_tokenizer(phoenix_texts, vocab_size=1500)
    assert isinstance(tok, PreTrainedTokenizerFast) and len(tok) == 1500
    assert (tok.pad_token_id, tok.bos_token, tok.eos_token) == (0, "<s>", "</s>")
    for text in phoenix_texts[:200]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok("und nun die wettervorhersage")["input_ids"]) <= 6  # merges learned from the corpus
    tok.save_pretrained(tmp_path / "tok")
    again = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert again(phoenix_texts[5])["input_ids"] == tok(phoenix_texts[5])["input_ids"]
    assert again.eos_token_id == tok.eos_token_id and again.pad_token_id == tok.pad_token_id


def test_wordpiece_and_word_level(phoenix_train):
    texts = [r["text"] for r in phoenix_train]
    wp = train_tokenizer(texts, vocab_size=800, kind="wordpiece")
    assert wp.decode(wp("und nun die wettervorhersage", add_special_tokens=False)["input_ids"]) == (
        "und nun die wettervorhersage"
    )
    glosses = [r["gloss"] for r in phoenix_train]
    words = train_word_tokenizer(glosses, min_count=2)
    ids = words("JETZT WETTER MORGEN XYZUNBEKANNT", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and ids[-1] == words.unk_token_id and words.unk_token_id not in ids[:3]
    with pytest.raises(ValueError):
        train_tokenizer(["", "  "])
    with pytest.raises(ValueError, match="kind"):
        train_tokenizer(texts[:10], kind="unigram")


def test_wordpiece_merges_the_most_frequent_pair_first():
    words = Counter({"low": 5, "lower": 2, "newest": 6, "widest": 3})
    alphabet = ["##d", "##e", "##i", "##o", "##r", "##s", "##t", "##w", "l", "n", "w"]
    vocab = wordpiece_vocab(words, vocab_size=2 + len(alphabet) + 4, special_tokens=["<pad>", "<unk>"])
    # (##e ##s) and (##s ##t) both occur 9 times: the tie goes to the pair that sorts first; then ##es+##t (9);
    # then (l ##o) and (##o ##w) at 7: ##o ##w sorts first; then l+##ow.
    assert list(vocab) == ["<pad>", "<unk>", *alphabet, "##es", "##est", "##ow", "low"]
    assert list(vocab.values()) == list(range(len(vocab)))
    # Merges stop below min_frequency: only pairs seen 9 times qualify.
    assert list(wordpiece_vocab(words, 100, min_frequency=9))[len(alphabet) :] == ["##es", "##est"]


def test_wordpiece_vocabulary_is_the_same_in_every_process(phoenix_texts):
    code = (
        "import json, sys; from ray_slt.models.tiny import train_tokenizer; "
        "texts = json.load(sys.stdin); tok = train_tokenizer(texts, vocab_size=700, kind='wordpiece'); "
        "print(json.dumps(sorted(tok.get_vocab().items(), key=lambda kv: kv[1])))"
    )
    texts = json.dumps(phoenix_texts[:2000])
    runs = [
        subprocess.run([sys.executable, "-c", code], input=texts, capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    here = json.dumps(sorted(train_tokenizer(phoenix_texts[:2000], 700, kind="wordpiece").get_vocab().items(),
                             key=lambda kv: kv[1]))  # fmt: skip
    assert runs[0].strip() == runs[1].strip() == here
    assert len(json.loads(here)) == 700


@pytest.mark.parametrize(("arch", "cls"), [("qwen3", "Qwen3ForCausalLM"), ("qwen2", "Qwen2ForCausalLM")])
def test_tiny_lm_classes_and_seeding(phoenix_texts, arch, cls):
    tok = train_tokenizer(phoenix_texts[:1000], vocab_size=500)
    cfg = TinyLMConfig(hidden=32, layers=1, heads=4, kv_heads=2, intermediate=64)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_tiny_lm(tok, arch, cfg, seed=1)
    assert torch.equal(torch.rand(1), before)  # the global RNG is left alone
    b, c = build_tiny_lm(tok, arch, cfg, seed=1), build_tiny_lm(tok, arch, cfg, seed=2)
    assert type(a).__name__ == cls
    assert a.config.vocab_size == len(tok) and a.config.eos_token_id == tok.eos_token_id
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    out = a(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.logits.shape == (1, 3, len(tok))
