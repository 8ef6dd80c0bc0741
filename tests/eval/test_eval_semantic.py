"""ray_slt.eval.semantic: the soft-cardinality formula on hand-made similarity matrices, TSR with the real
all-MiniLM-L6-v2 weights, and PGER with HanTa on real PHOENIX-2014T and How2Sign sentences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ray_slt.errors import ConfigError, DataError
from ray_slt.eval.semantic import (
    HanTaTagger,
    corpus_pger,
    corpus_tsr,
    entities,
    pger,
    semantic_tokens,
    soft_cardinality,
    tsr,
    tsr_tokens,
)


class TableSim:
    """A similarity given as a table: sim(w, w) = 1, listed pairs as given, every other pair 0."""

    def __init__(self, pairs: dict[tuple[str, str], float] | None = None):
        self.pairs = pairs or {}

    def __call__(self, words):
        n = len(words)
        m = np.eye(n)
        for i in range(n):
            for j in range(n):
                if i != j:
                    m[i, j] = self.pairs.get((words[i], words[j]), self.pairs.get((words[j], words[i]), 0.0))
        return m


# ------------------------------------------------------------------------------------- soft cardinality


def test_soft_cardinality_by_hand():
    assert soft_cardinality(np.eye(4)) == pytest.approx(4.0)  # unrelated words count fully
    assert soft_cardinality(np.ones((4, 4))) == pytest.approx(1.0)  # synonyms count once together
    m = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert soft_cardinality(m) == pytest.approx(1 / 1.5 + 1 / 1.5 + 1.0)
    m = np.array([[1.0, 0.2, 0.6], [0.2, 1.0, 0.3], [0.6, 0.3, 1.0]])
    assert soft_cardinality(m) == pytest.approx(1 / 1.8 + 1 / 1.5 + 1 / 1.9)
    # Negative cosines count as unrelated (clipped to 0), values above 1 as identical.
    assert soft_cardinality(np.array([[1.0, -0.4], [-0.4, 1.0]])) == pytest.approx(2.0)
    assert soft_cardinality(np.array([[1.0, 1.3], [1.3, 1.0]])) == pytest.approx(1.0)
    assert soft_cardinality(np.zeros((0, 0))) == 0.0


def test_soft_cardinality_rejects_bad_matrices():
    with pytest.raises(ValueError, match="square"):
        soft_cardinality(np.ones((2, 3)))
    with pytest.raises(ValueError, match="similar to itself"):
        soft_cardinality(np.zeros((2, 2)))


def test_tsr_two_words_by_hand():
    # Y = {a}, Ŷ = {b}, sim(a, b) = s: C(Y) = C(Ŷ) = 1, C(Y ∪ Ŷ) = 2 / (1 + s), TSR = 2s / (1 + s).
    for s in (0.0, 0.25, 0.5, 1.0):
        assert tsr_tokens(["a"], ["b"], TableSim({("a", "b"): s})) == pytest.approx(2 * s / (1 + s))


def test_tsr_three_words_by_hand():
    sim = TableSim({("regen", "schauer"): 0.6, ("regen", "sonne"): 0.2, ("schauer", "sonne"): 0.1})
    y, h = ["regen", "sonne"], ["schauer", "sonne"]
    c_y = 2 / 1.2
    c_h = 2 / 1.1
    c_u = 1 / 1.8 + 1 / 1.7 + 1 / 1.3  # union order: regen, sonne, schauer
    assert tsr_tokens(y, h, sim) == pytest.approx((c_y + c_h - c_u) / c_h)
    # Repeated words are one element of the set.
    assert tsr_tokens([*y, *y], [*h, "sonne"], sim) == pytest.approx((c_y + c_h - c_u) / c_h)


def test_tsr_is_clipped_to_one():
    # c is identical to both a and b, which are unrelated: C(Y) = 2, C(Ŷ) = 1, C(Y ∪ Ŷ) = 1/2 + 1/2 + 1/3,
    # so the raw ratio of Eq. 3 is 5/3; TSR reports 1.
    sim = TableSim({("a", "c"): 1.0, ("b", "c"): 1.0})
    c_u = 0.5 + 0.5 + 1 / 3
    assert (2 + 1 - c_u) / 1 == pytest.approx(5 / 3)
    assert tsr_tokens(["a", "b"], ["c"], sim) == 1.0
    assert tsr_tokens(["a", "b"], ["c"], sim, denominator="reference") == pytest.approx((3 - c_u) / 2)


def test_tsr_with_crisp_similarity_is_set_overlap(phoenix_test):
    """With sim = 1 for equal words and 0 otherwise, TSR is |Y ∩ Ŷ| / |Ŷ| (Eq. 3's denominator)."""
    sim = TableSim()
    for ref, hyp in itertools.pairwise(phoenix_test[:201]):
        y, h = set(semantic_tokens(ref)), set(semantic_tokens(hyp))
        assert tsr(ref, hyp, sim) == pytest.approx(len(y & h) / len(h))
        assert tsr(ref, hyp, sim, denominator="reference") == pytest.approx(len(y & h) / len(y))
    assert tsr("regen im norden", "", sim) == 0.0
    assert tsr("", "regen", sim) == 0.0


# ------------------------------------------------------------------------------- TSR with real MiniLM


def test_embedding_similarity_is_the_models_cosine(minilm_path, minilm_sim):
    from sentence_transformers import SentenceTransformer

    words = ["rain", "snow", "shower", "monday", "airplane"]
    direct = SentenceTransformer(minilm_path, device="cpu").encode(words, normalize_embeddings=True)
    np.testing.assert_allclose(minilm_sim(words), direct @ direct.T, atol=1e-5)
    m = minilm_sim(words)
    assert m[0, 1] > m[0, 4] and m[0, 2] > m[0, 3]  # rain~snow/shower, not airplane/monday


def test_tsr_with_minilm_on_real_sentences(how2sign_test, minilm_sim):
    refs = [s for s in how2sign_test[:300] if len(semantic_tokens(s)) >= 5][:120]
    assert len(refs) >= 100
    assert corpus_tsr(refs, refs, sim=minilm_sim) == pytest.approx(1.0)
    # Eq. 3 divides by the hypothesis: a hypothesis made of reference words only (every third word dropped)
    # scores exactly 1; the reference-normalised variant sees what is missing.
    near = [" ".join(w for i, w in enumerate(s.split()) if i % 3 != 2) for s in refs]
    assert corpus_tsr(near, refs, sim=minilm_sim) == pytest.approx(1.0)
    near_recall = corpus_tsr(near, refs, sim=minilm_sim, denominator="reference")
    assert 0.8 < near_recall < 1.0
    # Another sentence of the corpus: clearly lower, though not near 0 (word embeddings are not orthogonal).
    shuffled = refs[1:] + refs[:1]
    t_other = corpus_tsr(shuffled, refs, sim=minilm_sim)
    crisp = corpus_tsr(shuffled, refs, sim=TableSim())
    assert crisp < t_other < 0.97
    assert corpus_tsr(shuffled, refs, sim=minilm_sim, denominator="reference") < near_recall
    # A synonym keeps more than an unrelated word.
    ref = "the weather will be rainy tomorrow"
    wet, purple = (tsr(ref, f"the weather will be {w} tomorrow", minilm_sim) for w in ("wet", "purple"))
    assert 0.8 < purple < wet < 1.0
    # Multiple references: the best one counts.
    assert corpus_tsr(shuffled, [refs, shuffled], sim=minilm_sim) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="denominator"):
        tsr(ref, ref, minilm_sim, denominator="both")


def test_tsr_default_embedder_is_the_papers_model():
    from ray_slt.eval.semantic import DEFAULT_EMBEDDER, EmbeddingSimilarity

    assert DEFAULT_EMBEDDER == "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
    assert EmbeddingSimilarity().embed.model_name == DEFAULT_EMBEDDER  # loaded lazily, on first use


# ---------------------------------------------------------------------------------------------- PGER


class DictTagger:
    def __init__(self, tags):
        self.tags = tags

    def __call__(self, text):
        return [(w, self.tags.get(w.lower(), "X")) for w in text.split()]


def test_pger_formula_with_a_plugged_tagger():
    tagger = DictTagger({"regen": "NOUN", "norden": "NOUN", "fallen": "VERB", "kalt": "ADJ", "es": "PRON"})
    ref = "es wird regen im norden fallen"
    assert entities(ref, tagger) == {"regen", "norden", "fallen"}
    assert pger(ref, "regen im süden", tagger) == pytest.approx(1 / 3)
    assert pger(ref, "Regen im Norden fallen", tagger) == pytest.approx(1.0)
    assert pger("es ist so", "regen", tagger) is None  # no entity in the reference
    result = corpus_pger(["regen", "x"], [ref, "es ist so"], tagger=tagger)
    assert result == {"pger": pytest.approx(1 / 3), "n_scored": 1, "n_skipped": 1}
    with pytest.raises(DataError):
        corpus_pger(["a"], [["a"], ["b"]], tagger=tagger)


@pytest.fixture(scope="module")
def hanta_de():
    pytest.importorskip("HanTa", reason="PGER's default tagger HanTa is not installed")
    return HanTaTagger("de")


def test_hanta_german_entities_on_phoenix(phoenix_test, hanta_de):
    ref = phoenix_test[0]  # "regen und schnee lassen an den alpen in der nacht nach im norden ..."
    ents = entities(ref, hanta_de)
    assert {"regen", "schnee", "alpen", "nacht", "norden", "nordosten", "lassen", "fallen", "klar"} <= ents
    assert not ents & {"und", "an", "den", "in", "der", "im", "ist", "das", "hier"}
    assert pger(ref, ref, hanta_de) == 1.0
    hyp = ref.replace("schnee", "sonne")
    assert pger(ref, hyp, hanta_de) == pytest.approx((len(ents) - 1) / len(ents))
    result = corpus_pger(phoenix_test[1:101], phoenix_test[:100], lang="de")
    assert result["n_scored"] + result["n_skipped"] == 100 and result["n_scored"] >= 95
    assert 0.02 < result["pger"] < 0.6  # other weather reports share some words, not most
    assert corpus_pger(phoenix_test[:100], phoenix_test[:100], lang="de")["pger"] == 1.0


def test_hanta_never_loads_a_model_file_from_the_working_directory(tmp_path, monkeypatch):
    pytest.importorskip("HanTa", reason="PGER's default tagger HanTa is not installed")
    import gzip

    # HanTa's models are pickles; given a bare name it would first unpickle a file of that name in the cwd.
    (tmp_path / "morphmodel_ger.pgz").write_bytes(gzip.compress(b"not the bundled model"))
    monkeypatch.chdir(tmp_path)
    assert dict(HanTaTagger("de")("Regen im Norden"))["Regen"] == "NOUN"  # the bundled model answered


def test_hanta_english_entities_on_how2sign(how2sign_test):
    pytest.importorskip("HanTa", reason="PGER's default tagger HanTa is not installed")
    tagger = HanTaTagger("en-US")
    ref = how2sign_test[1]  # "The aileron is the control surface in the wing that is controlled by ..."
    ents = entities(ref, tagger)
    assert {"aileron", "surface", "wing", "controlled", "lateral", "movement", "stick"} <= ents
    assert not ents & {"the", "is", "in", "that", "by", "of"}
    tags = dict(tagger("I hope you are having fun ."))
    assert tags["hope"] == "VERB" and tags["fun"] == "NOUN" and tags["are"] == "AUX" and tags["I"] == "PRON"


def test_no_default_tagger_for_chinese():
    with pytest.raises(ConfigError, match="no default part-of-speech tagger"):
        corpus_pger(["他今年四岁。"], ["他今年四岁。"], lang="zh")
    with pytest.raises(ConfigError, match="lang"):
        corpus_pger(["a"], ["a"])
