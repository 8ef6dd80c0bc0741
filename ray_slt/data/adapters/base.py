"""What every corpus adapter shares: the adapter interface, a strict table reader and error collection.

An adapter maps a corpus's official files under a root (local or ``s3://``) to manifest rows. Bad input is
never dropped silently: by default the first bad row raises a :class:`DataError` naming the file and line;
with ``skip_bad`` the bad row becomes a record in the error report and every good row is kept.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from ray_slt import storage
from ray_slt.config import Schema
from ray_slt.errors import ConfigError, DataError


class ErrorReport:
    """Collects bad rows. Strict (the default) re-raises the first one."""

    def __init__(self, skip_bad: bool = False):
        self.skip_bad = skip_bad
        self.records: list[dict] = []

    @contextlib.contextmanager
    def guard(self, source: str | None = None, line: int | None = None) -> Iterator[None]:
        """Run one row's conversion: a DataError inside is raised (strict) or recorded (skip_bad)."""
        try:
            yield
        except DataError as e:
            if e.source is None and source is not None:
                e = DataError(e.reason, source, line if e.line is None else e.line)
            if not self.skip_bad:
                raise e from None
            self.records.append(e.as_record())

    def add(self, error: DataError) -> None:
        with self.guard():
            raise error

    def __len__(self) -> int:
        return len(self.records)


class NoOptions(Schema):
    """Adapters without options."""


class Adapter:
    """One corpus. Subclasses set the class attributes and implement :meth:`read`."""

    name: ClassVar[str]
    description: ClassVar[str]
    sign_language: ClassVar[str]
    spoken_language: ClassVar[str]
    Options: ClassVar[type[Schema]] = NoOptions

    def read(self, root: str, options: Any, report: ErrorReport) -> list[dict]:
        """Return manifest rows (see :func:`ray_slt.data.manifest.make_row`) for the corpus under ``root``."""
        raise NotImplementedError


def sample_id(dataset: str, native_id: str) -> str:
    return f"{dataset}.{native_id}"


def render_template(template: str, option: str, **fields: str) -> str:
    """Fill a path template's ``{field}``s; an unknown field is a ConfigError naming the option and the fields."""
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        known = ", ".join("{" + f + "}" for f in fields)
        raise ConfigError(f"{option} {template!r}: bad field {e} (known: {known})") from None


def find_file(root: str, candidates: Sequence[str], what: str) -> str:
    """The first of ``candidates`` (relative to root) that exists; an error listing them otherwise."""
    for rel in candidates:
        uri = storage.join(root, rel)
        if storage.exists(uri):
            return uri
    raise DataError(f"{what} not found; looked for {', '.join(candidates)}", root)


def read_table(
    uri: str,
    delimiter: str,
    required: Sequence[str],
    *,
    quoting: int = csv.QUOTE_MINIMAL,
    header: Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> Iterator[tuple[int, list[str], list[str]]]:
    """Read a delimited table strictly: yields ``(line, header, fields)`` for every data row.

    Invalid bytes (in ``encoding``) and a header missing ``required`` columns raise a DataError naming the
    file (and line). Rows are yielded raw so the caller can check their width inside its own error guard
    (see :func:`record`). Blank lines are skipped.
    """
    text = storage.read_text(uri, encoding=encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        cols = list(header) if header is not None else next(reader)
    except StopIteration:
        raise DataError("empty file (no header row)", uri, 1) from None
    except csv.Error as e:
        raise DataError(f"unreadable header ({e})", uri, 1) from None
    cols = [c.strip() for c in cols]
    missing = [c for c in required if c not in cols]
    if missing:
        raise DataError(f"missing columns {missing} (found {cols}; is the delimiter {delimiter!r} right?)", uri, 1)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"malformed row ({e})", uri, reader.line_num) from None
        if not fields or all(not f.strip() for f in fields):
            continue
        yield reader.line_num, cols, fields


def record(cols: Sequence[str], fields: Sequence[str]) -> dict[str, str]:
    """A row as a dict, or a DataError if it does not have one field per column."""
    if len(fields) != len(cols):
        raise DataError(f"expected {len(cols)} fields ({', '.join(cols)}), found {len(fields)}")
    return dict(zip(cols, fields))


def non_empty(rec: dict[str, str], column: str) -> str:
    value = rec.get(column, "")
    if value is None or not str(value).strip():
        raise DataError(f"empty {column!r}")
    return str(value).strip()


def parse_int(value: str, column: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise DataError(f"{column} {value!r} is not an integer") from None


def parse_float(value: str, column: str) -> float:
    try:
        out = float(str(value).strip())
    except ValueError:
        raise DataError(f"{column} {value!r} is not a number") from None
    if out != out:  # NaN
        raise DataError(f"{column} is NaN")
    return out
