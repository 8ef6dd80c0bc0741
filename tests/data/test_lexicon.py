"""Lexicons: the table format (strict reading with file:line errors, skip_bad, CSV/Parquet round trips),
ASL-LEX 2.0's template (one parameter per fragment; the real sign data read in place), gloss matching with its
coverage report (WLASL's 2000 glosses against ASL-LEX), and `ray-slt lexicon`."""

from __future__ import annotations

import json

import pytest
from testlib import shared

from ray_slt.cli import main
from ray_slt.data import lexicon as lx
from ray_slt.errors import DataError


def asl_lex_csv():
    path = shared() / "asl_lex" / "signdata-11-5-20.csv"
    if not path.exists():
        pytest.skip("the shared data's ASL-LEX 2.0 table is not available")
    return path


def test_fragments_split_at_punctuation_and_glosses_normalise():
    assert lx.fragments("Flat hand, palm down; at the chin. Tapping twice!") == [
        "Flat hand", "palm down", "at the chin", "Tapping twice"]  # fmt: skip
    assert lx.fragments("no punctuation at all") == ["no punctuation at all"]
    assert lx.normalize_gloss("Thank_You") == lx.normalize_gloss("thank you") == "thank you"
    assert lx.normalize_gloss("about_2") == "about" and lx.normalize_gloss("1_dollar") == "1 dollar"


# One ASL-LEX 2.0 row, coded by hand (column names as in signdata-11-5-20.csv): a two-morpheme compound.
RECORD = {
    "EntryID": "demo", "Handshape.2.0": "open_b", "SelectedFingers.2.0": "imrp", "Flexion.2.0": "FullyOpen",
    "ThumbPosition.2.0": "Open", "MajorLocation.2.0": "Head", "MinorLocation.2.0": "Chin", "Contact.2.0": "1",
    "Movement.2.0": "Straight", "RepeatedMovement.2.0": "0", "SignType.2.0": "OneHanded",
    "NonDominantHandshape.2.0": "NA", "NumberOfMorphemes.2.0": "2", "HandshapeM2.2.0": "1",
    "SelectedFingersM2.2.0": "i", "MajorLocationM2.2.0": "Neutral", "MovementM2.2.0": "Circular",
}  # fmt: skip


def test_asl_lex_template_one_parameter_per_fragment():
    text = lx.asl_lex_description(RECORD)
    assert text == (
        "Open B handshape, all four fingers selected, fingers fully open, thumb open, at the chin, touching there, "
        "moving in a straight line, one-handed, then 1 handshape, the index finger selected, "
        "in the space in front of the body, moving in a circle."
    )
    first = lx.asl_lex_fragments(RECORD)
    assert [f.lower() for f in lx.fragments(text)[: len(first)]] == [f.lower() for f in first]
    assert len(lx.fragments(text)) == len(first) + 4
    # a non-dominant handshape is said for two-handed signs only; an uncoded parameter is left out
    two = {**RECORD, "SignType.2.0": "SymmetricalOrAlternating", "NonDominantHandshape.2.0": "open_b",
           "Flexion.2.0": "NA", "NumberOfMorphemes.2.0": "1"}  # fmt: skip
    frags = lx.fragments(lx.asl_lex_description(two))
    assert frags[-2:] == ["both hands moving alike or alternating", "other hand in the open B handshape"]
    assert not any(f.startswith("fingers ") for f in frags)


def test_the_real_asl_lex_table():
    path = str(asl_lex_csv())
    assert lx.is_asl_lex(path)
    entries = lx.asl_lex_lexicon(path)
    assert len(entries) == 2723 and len({e.gloss for e in entries}) == 2723
    # two different signs share each of four EntryIDs: the second is a variant of its own
    twice = [e for e in entries if e.entry_id == "bite"]
    assert [e.gloss for e in twice] == ["bite", "bite_2"] and twice[0].fields["Code"] != twice[1].fields["Code"]
    by = {e.gloss: e for e in entries}
    book = by["book"]
    assert book.description.startswith("Open B handshape, all four fingers selected, fingers fully open")
    assert book.iconicity_type == "Perceptual" and book.frequency == pytest.approx(6.677)
    assert book.fields["Handshape"] == "open_b" and book.language == "ase"
    assert by["drink"].aliases == ["DRINKc"] and by["1_dollar"].aliases == ["DOLLAR"]
    # every entry's fragments are its parameters: never an empty fragment, each short
    assert all(lx.fragments(e.description) and max(len(f.split()) for f in e.fragments) <= 12 for e in entries)
    kinds = {e.iconicity_type for e in entries}
    assert {"Arbitrary", "Perceptual", "Pantomimic"} <= kinds


def test_user_tables_strict_and_skip_bad(tmp_path):
    table = tmp_path / "mine.csv"
    table.write_text(
        "gloss,description\n"
        'HOUSE,"Flat hands, roof shape, at the chest"\n'
        "TREE,\n"
        "CAT,Pinch at the cheek,extra\n"
        "house,Another house\n"
        "DOG,Snap fingers\n"
    )
    with pytest.raises(DataError) as e:
        lx.read_lexicon(str(table), language="ase")
    assert (e.value.line, e.value.reason) == (3, "empty description")
    entries, bad = lx.read_lexicon(str(table), language="ase", skip_bad=True)
    assert [(x.gloss, x.language, x.source) for x in entries] == [("HOUSE", "ase", "user"), ("DOG", "ase", "user")]
    assert entries[0].fragments == ["Flat hands", "roof shape", "at the chest"]
    assert [(b["line"], b["reason"]) for b in bad] == [
        (3, "empty description"),
        (4, "1 more cells than the header's 2 columns"),
        (5, "gloss 'house' (ase) already on line 2"),
    ]
    (tmp_path / "nocol.csv").write_text("sign,text\nA,b\n")
    with pytest.raises(DataError, match="missing: gloss, description") as e:
        lx.read_lexicon(str(tmp_path / "nocol.csv"))
    assert e.value.line == 1
    (tmp_path / "latin1.csv").write_bytes("gloss,description\nA,ok\nB,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid utf-8") as e:
        lx.read_lexicon(str(tmp_path / "latin1.csv"))
    assert e.value.line == 3


def test_the_whole_asl_lex_lexicon_round_trips(tmp_path):
    entries = lx.asl_lex_lexicon(str(asl_lex_csv()))
    lx.write_lexicon(entries, str(tmp_path / "asl_lex.csv"))
    back, bad = lx.read_lexicon(str(tmp_path / "asl_lex.csv"))
    assert back == entries and bad == []


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_write_read_round_trip(tmp_path, suffix):
    entries = [
        lx.Entry("A", "Fist, at the chest.", "ase", "asl-lex-2.0", "a_1", ["A-LEMMA"], "Arbitrary", 1.5, 4.25,
                 {"Handshape": "s"}),
        lx.Entry("B", "Flat hand, tapping.", "qsl", "vlm:tiny"),
    ]  # fmt: skip
    uri = str(tmp_path / f"lex.{suffix}")
    lx.write_lexicon(entries, uri)
    back, bad = lx.read_lexicon(uri)
    assert back == entries and bad == []


def test_matching_and_coverage():
    entries = [lx.Entry("thank_you", "x"), lx.Entry("about_1", "y"), lx.Entry("about_2", "z"),
               lx.Entry("forgetful", "w", aliases=["FORGET"])]  # fmt: skip
    cov = lx.match_glosses(["thank you", "about", "forget", "zebra", "thank you"], entries)
    assert cov.matched == {"thank you": "thank_you", "about": "about_1", "forget": "forgetful"}
    assert cov.unmatched == ["zebra"] and cov.ambiguous == {"about": ["about_1", "about_2"]}
    assert cov.by_alias == ["forget"]
    assert cov.summary() == {"glosses": 4, "matched": 3, "by_alias": 1, "unmatched": 1, "ambiguous": 1,
                             "coverage": 0.75}  # fmt: skip
    mapped, _ = lx.corpus_lexicon(["about", "zebra"], entries)
    assert [(e.gloss, e.description, e.entry_id) for e in mapped] == [("about", "y", "about_1")]


def test_wlasl_coverage_by_asl_lex():
    path = str(asl_lex_csv())
    wlasl = shared() / "wlasl" / "WLASL_v0.3.json"
    glosses = lx.corpus_glosses(str(wlasl))
    assert len(glosses) == 2000 and glosses[:3] == ["book", "drink", "computer"]
    cov = lx.match_glosses(glosses, lx.asl_lex_lexicon(path))
    s = cov.summary()
    assert (s["matched"], s["by_alias"], s["unmatched"]) == (1428, 46, 572)
    assert cov.ambiguous["type"] == ["type", "type_2"]
    assert cov.matched["thank you"] == "thank_you" and "forget" in cov.by_alias
    # WLASL100 (the 100 most frequent glosses) is better covered than the tail
    head = lx.match_glosses(glosses[:100], lx.asl_lex_lexicon(path)).summary()
    assert head["coverage"] > s["coverage"]


def test_class_lists(tmp_path):
    (tmp_path / "a.txt").write_text("0\tbook\n1\tdrink\n\n")
    assert lx.read_class_list(str(tmp_path / "a.txt")) == ["book", "drink"]
    (tmp_path / "b.txt").write_text("book\ndrink\nbook\n")
    with pytest.raises(DataError, match="occurs twice") as e:
        lx.read_class_list(str(tmp_path / "b.txt"))
    assert e.value.line == 3


def test_lexicon_cli(tmp_path, capsys):
    table = tmp_path / "mine.csv"
    table.write_text('gloss,description,language\nbook,"Flat hands, opening",ase\ndrink,,ase\nzzz,Fist,ase\n')
    classes = tmp_path / "classes.txt"
    classes.write_text("0\tbook\n1\tdrink\n2\tcomputer\n")
    out = tmp_path / "out" / "lex.csv"
    assert main(["lexicon", str(table), "--out", str(out), "--match", str(classes)]) == 2
    err = capsys.readouterr().err
    assert f"{table}:3: empty description" in err and not out.exists()
    code = main(["lexicon", str(table), "--out", str(out), "--match", str(classes), "--skip-bad", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["entries"] == 1 and result["coverage"]["matched"] == 1
    assert [b["line"] for b in result["bad_rows"]] == [3]
    report = json.loads((tmp_path / "out" / "lex.coverage.json").read_text())
    assert report["matched_glosses"] == {"book": "book"} and report["unmatched_glosses"] == ["drink", "computer"]
    back, _ = lx.read_lexicon(str(out))
    assert [(e.gloss, e.fragments) for e in back] == [("book", ["Flat hands", "opening"])]
