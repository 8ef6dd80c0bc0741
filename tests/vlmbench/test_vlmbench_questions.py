"""The VLM benchmarks without a model: WordNet synonyms, reply parsing and scoring, frame settings, and the
question sets of zero-shot WLASL recognition and LexSign-Bench built from the real WLASL and ASL-LEX tables."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
from testlib import shared

from ray_slt.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def wordnet():
    from ray_slt.vlmbench.wordnet import WordNet

    return WordNet()


@pytest.fixture(scope="module")
def asl_lex():
    from ray_slt.data.lexicon import asl_lex_lexicon

    return asl_lex_lexicon(str(shared("asl_lex", "signdata-11-5-20.csv")))


@pytest.fixture(scope="module")
def wlasl_all():
    """Every WLASL2000 instance (videos not needed to build questions) and the 2000 glosses."""
    from ray_slt.vlmbench.wlasl import wlasl_rows

    rows, vocab, _ = wlasl_rows(str(shared("wlasl")), 2000, ("train", "dev", "test"), require_video=False)
    return rows, vocab


# ----------------------------------------------------------------------------------------------- WordNet


def test_wordnet_synonyms_by_hand(wordnet):
    assert len(wordnet) == 117659  # synsets of WordNet 3.0 (82115 noun + 13767 verb + 18156 adj + 3621 adv)
    book = wordnet.synonyms("book")
    assert {"book", "volume", "ledger", "record", "hold", "reserve"} <= book
    assert "library" not in book  # no hypernyms or related words
    assert {"fatigue", "exhaust", "tire"} <= wordnet.synonyms("tired")  # base form "tire" via WordNet's morphy
    assert wordnet.synonyms("Thank You") == frozenset({"thank you"})  # not in WordNet: itself only
    assert wordnet.synonyms("xyzzy") == frozenset({"xyzzy"})
    assert "off" not in wordnet.synonyms("offer")  # adj.exc lists "offer" twice; the last line counts (as NLTK)


def test_wordnet_location_errors(tmp_path):
    from ray_slt.vlmbench.wordnet import WordNet

    with pytest.raises(ConfigError, match="not a WordNet database directory"):
        WordNet(str(tmp_path))


# ---------------------------------------------------------------------------------------- replies, scoring


@pytest.mark.parametrize(
    "reply, letter",
    [("B", "B"), ("(C)", "C"), ("Answer: D", "D"), ("The answer is A.", "A"), ("A) the sign for ...", "A"),
     ("I think B or C", None), ("A woman is signing. B", "B"), ("none of them", None), ("", None)],
)  # fmt: skip
def test_parse_letter(reply, letter):
    from ray_slt.vlmbench.scoring import parse_letter

    assert parse_letter(reply) == letter


@pytest.mark.parametrize(
    "reply, verdict",
    [("The handshape fits... YES", "YES"), ("no.", "NO"), ("Yes, but overall: NO", "NO"), ("unclear", None)],
)
def test_parse_yes_no(reply, verdict):
    from ray_slt.vlmbench.scoring import parse_yes_no

    assert parse_yes_no(reply) == verdict


def test_open_set_matching_by_hand(wordnet):
    from ray_slt.vlmbench.scoring import exact_match, lenient_match, synonym_match

    assert exact_match(" Book ", "book") and not exact_match("books", "book")
    assert synonym_match("volume", "book", wordnet.synonyms) and not exact_match("volume", "book")
    assert not synonym_match("library", "book", wordnet.synonyms)
    # lenient: punctuation, an article or "the sign for", a plural -s, "_"/"-"
    assert lenient_match('The sign for "Books".', "book")
    assert lenient_match("THANK-YOU", "thank you") and not exact_match("THANK-YOU", "thank you")
    assert lenient_match("a volume", "book", wordnet.synonyms) and not lenient_match("a volume", "book")
    assert not lenient_match("bookcase", "book", wordnet.synonyms)


def test_binary_scores_by_hand():
    from ray_slt.vlmbench.scoring import binary_scores

    labels = [True, True, True, False, False, False]
    verdicts = ["YES", "NO", None, "YES", "NO", "NO"]  # TP 1, FN 2 (one a refusal), FP 1, TN 2
    s = binary_scores(verdicts, labels)
    assert (s["tp"], s["fp"], s["fn"], s["tn"], s["refusals"]) == (1, 1, 2, 2, 1)
    assert s["accuracy"] == pytest.approx(100 * 3 / 6, abs=0.01)
    assert s["precision"] == pytest.approx(50.0) and s["recall"] == pytest.approx(100 / 3, abs=0.01)
    assert s["f1"] == pytest.approx(100 * 2 / (2 + 1 + 2), abs=0.01)
    assert s["accuracy_answered"] == pytest.approx(100 * 3 / 5, abs=0.01)  # the refusal left out
    # balanced 1:1: always YES has precision 50, recall 100, F1 66.67 (SPEC A.2)
    assert s["always_yes"] == {"accuracy": 50.0, "precision": 50.0, "recall": 100.0, "f1": 66.67}


def test_bootstrap_interval_covers_the_mean_and_is_seeded():
    from ray_slt.vlmbench.scoring import accuracy_block, bootstrap_ci

    values = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_ci(values, seed=3)
    assert lo < 0.3 < hi and hi - lo < 0.25
    assert bootstrap_ci(values, seed=3) == (lo, hi)
    block = accuracy_block([True, False, False, True], [True, True, False, True])
    assert block["accuracy"] == 50.0 and block["accuracy_answered"] == pytest.approx(66.67, abs=0.01)
    assert block["answered"] == 3


# ------------------------------------------------------------------------------------------------- frames


def test_frame_settings():
    from ray_slt.vlmbench.frames import check_setting, select

    assert select(100, 25, "uniform:8").tolist() == [0, 14, 28, 42, 57, 71, 85, 99]
    assert select(5, 25, "uniform:8").tolist() == [0, 1, 2, 3, 4]
    assert select(50, 25, "fps:4").tolist() == [0, 6, 12, 19, 25, 31, 38, 44]  # every 1/4 s
    assert select(40, 4, "fps:4").tolist() == list(range(40))  # already at 4 fps
    central = select(100, 25, "central:16@5")
    assert len(central) == 16 and np.all(np.diff(central) == 5)  # 1/5 s apart at 25 fps
    assert abs((central[0] + central[-1]) / 2 - 49.5) <= 1  # centred
    short = select(20, 25, "central:16@5")
    assert len(short) == 16 and short.min() == 0 and short.max() == 19  # edge frames repeated
    for bad in ("uniform", "uniform:0", "every:2", "central:16"):
        with pytest.raises(ConfigError):
            check_setting(bad)


def test_temporal_perturbation_rate_and_determinism():
    from ray_slt.vlmbench.frames import perturb

    idx = np.arange(20000)
    out = perturb(idx, 0.2, "q1|perturb:0.2")
    counts = Counter(out.tolist())
    dropped = sum(1 for i in idx if i not in counts)
    repeated = sum(1 for c in counts.values() if c == 2)
    assert dropped / len(idx) == pytest.approx(0.1, abs=0.01) and repeated / len(idx) == pytest.approx(0.1, abs=0.01)
    assert np.all(np.diff(out) >= 0)  # order kept
    assert perturb(idx, 0.2, "q1|perturb:0.2").tolist() == out.tolist()
    assert perturb(idx, 0.2, "q2|perturb:0.2").tolist() != out.tolist()
    assert perturb(np.arange(3), 1.0, "k").size >= 1  # never empty


# ------------------------------------------------------------------------------------------- WLASL (paper 3)


def test_wlasl300_official_test_split():
    from ray_slt.vlmbench.wlasl import open_questions, wlasl_rows

    rows, candidates, missing = wlasl_rows(str(shared("wlasl")), 300, ("test",), require_video=False)
    assert len(rows) == 668 and missing == 0  # SPEC A.2: 668 test videos
    assert len(candidates) == 300 and len({r["gloss"] for r in rows}) <= 300
    assert set(r["gloss"] for r in rows) <= set(candidates)
    q1, q2 = open_questions(rows), open_questions(rows)
    assert [q["qid"] for q in q1] == [q["qid"] for q in q2]  # seed 42 order
    assert [q["qid"] for q in q1] != [q["qid"] for q in open_questions(rows, seed=1)]
    every, _, _ = wlasl_rows(str(shared("wlasl")), 300, ("train", "dev", "test"), require_video=False)
    kept, _, missing = wlasl_rows(str(shared("wlasl")), 300, ("train", "dev", "test"))
    assert len(kept) > 0 and len(kept) + missing == len(every)  # videos absent here are counted, not lost silently
    assert all(r["video_uri"].endswith(".mp4") for r in kept)


def test_binary_questions_balanced(wlasl_all, asl_lex):
    from ray_slt.vlmbench.wlasl import binary_questions

    rows = [r for r in wlasl_all[0] if r["split"] == "test" and json.loads(r["meta"])["class_id"] < 300]
    qs, coverage = binary_questions(rows, asl_lex)
    assert coverage["matched"] > 200
    by_gloss: dict[str, Counter] = {}
    for q in qs:
        by_gloss.setdefault(q["gold"], Counter())[q["label"]] += 1
        assert (q["shown"] == q["gold"]) == q["label"]  # negatives never show the gloss asked about
        assert q["description"]
    assert all(c[True] == c[False] for c in by_gloss.values())
    again, _ = binary_questions(rows, asl_lex)
    assert [q["qid"] for q in again] == [q["qid"] for q in qs]


# ------------------------------------------------------------------------------------ LexSign-Bench (paper 4)


def _build(rows, lexicon, tmp_path, name, **kw):
    from ray_slt.vlmbench.lexsign import build_lexsign
    from ray_slt.vlmbench.questions import write_questions

    qs, params = build_lexsign(rows, lexicon, **kw)
    head = write_questions(str(tmp_path / name), {"benchmark": "lexsign-bench", "protocol": "mcq",
                                                  "seed": kw.get("seed", 0), "params": params}, qs)  # fmt: skip
    return head, qs, params


def test_lexsign_is_deterministic_balanced_and_hashed(wlasl_all, asl_lex, tmp_path):
    from ray_slt.vlmbench.questions import read_questions

    rows, vocab = wlasl_all
    head, qs, params = _build(rows, asl_lex, tmp_path, "a.jsonl", count=20, seed=0, vocabulary=vocab)
    assert params["selected"] == {"Arbitrary": 20, "Perceptual": 20, "Pantomimic": 20, "Both": 20}
    assert len(qs) == 2 * params["videos"] and params["videos"] > 300
    head2, _, _ = _build(rows, asl_lex, tmp_path, "b.jsonl", count=20, seed=0, vocabulary=vocab)
    assert head2["content_hash"] == head["content_hash"]
    head3, _, _ = _build(rows, asl_lex, tmp_path, "c.jsonl", count=20, seed=1, vocabulary=vocab)
    assert head3["content_hash"] != head["content_hash"]
    for level in ("subunit", "gloss"):
        letters = Counter(q["answer"] for q in qs if q["level"] == level)
        assert set(letters) == set("ABCD") and max(letters.values()) - min(letters.values()) <= 1
    for q in qs:
        assert len(q["options"]) == 4 and q["gold"] not in q["distractors"]
        assert q["option_glosses"]["ABCD".index(q["answer"])] == q["gold"]
        assert len(set(q["options"])) == 4  # no two options alike (descriptions included)
    # the hash does not depend on where the corpus lives; it does on the questions
    moved = [{**r, "video_uri": "/elsewhere/" + r["video_uri"].rsplit("/", 1)[1]} for r in rows]
    head4, _, _ = _build(moved, asl_lex, tmp_path, "d.jsonl", count=20, seed=0, vocabulary=vocab)
    assert head4["content_hash"] == head["content_hash"]
    assert read_questions(str(tmp_path / "a.jsonl"))[0]["content_hash"] == head["content_hash"]
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    edited = json.loads(lines[1])
    edited["answer"] = "ABCD"[("ABCD".index(edited["answer"]) + 1) % 4]
    (tmp_path / "a.jsonl").write_text("\n".join([lines[0], json.dumps(edited), *lines[2:]]) + "\n")
    with pytest.raises(DataError, match="content_hash"):
        read_questions(str(tmp_path / "a.jsonl"))


def test_lexsign_distractors_harder_than_random(wlasl_all, asl_lex, tmp_path):
    from ray_slt.data.lexicon import corpus_lexicon
    from ray_slt.vlmbench.lexsign import build_lexsign, phonological_similarity

    rows, vocab = wlasl_all
    pool = {e.gloss: e for e in corpus_lexicon(vocab, asl_lex)[0]}
    # without a confusion matrix: phonologically closer than random glosses
    qs, _ = build_lexsign(rows, asl_lex, count=10, seed=0, vocabulary=vocab)
    rng = random.Random(0)
    chosen, rand = [], []
    for q in qs:
        if q["level"] != "gloss":
            continue
        chosen += [phonological_similarity(pool[q["gold"]], pool[d]) for d in q["distractors"]]
        others = [g for g in pool if g != q["gold"]]
        rand += [phonological_similarity(pool[q["gold"]], pool[g]) for g in rng.sample(others, 3)]
    assert np.mean(chosen) > np.mean(rand) + 2  # coded parameters shared: ~7 vs ~3
    # with a recognizer's confusion matrix: its most confused glosses first
    golds = sorted({q["gold"] for q in qs})
    confusion_rows = ["label,predicted,count"]
    confused = {}
    for g in golds:
        picks = rng.sample([x for x in pool if x != g], 4)
        confused[g] = picks
        confusion_rows += [f"{g},{p},{n}" for p, n in zip(picks, (9, 5, 2, 1))]
    (tmp_path / "confusion.csv").write_text("\n".join(confusion_rows) + "\n")
    from ray_slt.vlmbench.lexsign import read_confusion

    matrix = read_confusion(str(tmp_path / "confusion.csv"))
    qs2, params = build_lexsign(rows, asl_lex, count=10, seed=0, confusion=matrix, vocabulary=vocab)
    assert params["distractors"] == "confusion+phonology"
    mass, rand_mass = [], []
    for q in qs2:
        if q["level"] == "gloss":
            assert set(q["distractors"]) <= set(confused[q["gold"]])
            mass.append(sum(matrix[q["gold"]][d] for d in q["distractors"]))
            rand_mass.append(
                sum(matrix[q["gold"]].get(g, 0) for g in rng.sample([x for x in pool if x != q["gold"]], 3))
            )
    assert np.mean(mass) >= 15 > np.mean(rand_mass)  # the three most confused (9+5+2, or 9+5+1 on a tie)


def test_question_file_errors(tmp_path):
    from ray_slt.vlmbench.questions import read_questions, write_questions

    with pytest.raises(DataError, match="twice"):
        write_questions(str(tmp_path / "q.jsonl"), {"benchmark": "x", "protocol": "open"},
                        [{"qid": "a"}, {"qid": "a"}])  # fmt: skip
    (tmp_path / "bad.jsonl").write_text('{"format": "something else"}\n')
    with pytest.raises(DataError, match=r"not a ray_slt\.vlmbench question file"):
        read_questions(str(tmp_path / "bad.jsonl"))
    (tmp_path / "torn.jsonl").write_text('{"format": "ray_slt.vlmbench", "version": 1}\n{"qid": \n')
    with pytest.raises(DataError, match=r"torn.jsonl:2"):
        read_questions(str(tmp_path / "torn.jsonl"))


def test_endpoint_without_its_api_key_fails_before_ray_starts(tmp_path, monkeypatch):
    import ray

    from ray_slt.vlmbench.config import BenchConfig
    from ray_slt.vlmbench.questions import write_questions
    from ray_slt.vlmbench.runner import run_answers

    q = str(tmp_path / "q.jsonl")
    write_questions(q, {"benchmark": "t", "protocol": "open"},
                    [{"qid": "open/a", "protocol": "open", "sample_id": "a", "gold": "book",
                      "video": {"video_uri": str(tmp_path / "a.mp4")}}])  # fmt: skip
    monkeypatch.delenv("RAY_SLT_TEST_KEY", raising=False)
    cfg = BenchConfig.model_validate({"questions": q, "out": str(tmp_path / "run"), "variants": ["open"],
        "model": {"endpoint": {"base_url": "https://api.example.com/v1", "model": "m",
                               "api_key_env": "RAY_SLT_TEST_KEY"}}})  # fmt: skip
    with pytest.raises(ConfigError, match="RAY_SLT_TEST_KEY"):
        run_answers(cfg, echo=False)
    assert not ray.is_initialized()
    # and the checkpoint model names in answer keys are full paths (two runs' "best" never share answers)
    a = BenchConfig.model_validate({"questions": q, "out": "o", "model": {"checkpoint": "runs/a/best"}})
    b = BenchConfig.model_validate({"questions": q, "out": "o", "model": {"checkpoint": "runs/b/best"}})
    assert a.model.name() != b.model.name()
