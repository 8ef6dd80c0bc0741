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
        self._at: tuple[str | None, int | None] = (None, None)

    @contextlib.contextmanager
    def guard(self, source: str | None = None, line: int | None = None) -> Iterator[None]:
        """Run one row's conversion: a DataError inside is raised (strict) or recorded (skip_bad)."""
        outer, self._at = self._at, (source, line)
        try:
            yield
        except DataError as e:
            if e.source is None and source is not None:
                e = DataError(e.reason, source, line if e.line is None else e.line)
            if not self.skip_bad:
                raise e from None
            self.records.append(e.as_record())
        finally:
            self._at = outer

    def where(self) -> str:
        """The row being converted, as ``file:line`` (or the file alone)."""
        source, line = self._at
        return f"{source}:{line}" if line is not None else str(source)

    def rows(self) -> Rows:
        """An empty row list that refuses a second row with the same ``sample_id`` (a bad row at its own file and
        line, naming where the first one was)."""
        return Rows(self)

    def add(self, error: DataError) -> None:
        with self.guard():
            raise error

    def __len__(self) -> int:
        return len(self.records)


class Rows(list):
    """A list of manifest rows that refuses duplicate ``sample_id`` s (see :meth:`ErrorReport.rows`); append rows
    inside :meth:`ErrorReport.guard`, so the duplicate is a bad row of the file and line being read."""

    def __init__(self, report: ErrorReport):
        super().__init__()
        self.report = report
        self.first: dict[str, str] = {}

    def append(self, row: dict) -> None:
        sid = row["sample_id"]
        if sid in self.first:
            raise DataError(f"duplicate id: sample {sid!r} was already read at {self.first[sid]}")
        self.first[sid] = self.report.where()
        super().append(row)


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


class BadFields(list):
    """The fields of a row whose bytes are not valid text: :func:`record` raises its error (file and line), so the
    row is a bad row like any other (skipped and recorded with ``skip_bad``) and the rows around it are kept."""

    def __init__(self, error: DataError):
        super().__init__()
        self.error = error


def _bad_byte(fields: Sequence[str]) -> int | None:
    for f in fields:
        for ch in f:
            if "\udc80" <= ch <= "\udcff":
                return ord(ch) - 0xDC00
    return None


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

    A header missing ``required`` columns, or with bytes invalid in ``encoding``, raises a DataError naming the
    file and line 1. A data row with invalid bytes is yielded as :class:`BadFields` (its own file and line; the
    other rows are read as usual), and so is a last row whose quote never closes (a file cut short), naming the
    lines left unread; any other CSV error stops the file at its line. Rows are yielded raw so the caller can
    check their width inside its own error guard (see :func:`record`). Blank lines are skipped.
    """
    data = storage.read_bytes(uri)
    try:
        text = storage.decode_text(data, uri, encoding)
    except DataError:
        # some lines are not valid text: read them as escapes and turn each such row into a bad row below
        text = data.decode(encoding, errors="surrogateescape")
        text = text[1:] if text.startswith("\ufeff") else text
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    try:
        cols = list(header) if header is not None else next(reader)
    except StopIteration:
        raise DataError("empty file (no header row)", uri, 1) from None
    except csv.Error as e:
        raise DataError(f"unreadable header ({e})", uri, 1) from None
    if header is None and (byte := _bad_byte(cols)) is not None:
        raise DataError(f"not valid {encoding} (byte 0x{byte:02x}) in the header", uri, 1)
    cols = [c.strip() for c in cols]
    missing = [c for c in required if c not in cols]
    if missing:
        raise DataError(f"missing columns {missing} (found {cols}; is the delimiter {delimiter!r} right?)", uri, 1)
    previous = reader.line_num
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            if "unexpected end of data" in str(e):
                # a quote opened and never closed: the file ends inside it (e.g. cut short). The rows before are
                # fine; this one, with every line after its start, is one bad row naming those lines
                span = f"lines {previous + 1}-{reader.line_num}" if reader.line_num > previous + 1 else "its line"
                err = DataError(f"malformed row ({e}): a quote is never closed, {span} unread", uri, previous + 1)
                yield previous + 1, cols, BadFields(err)
                return
            # another CSV error: the reader cannot be trusted to resynchronise, so the file stops here
            raise DataError(f"malformed row ({e})", uri, reader.line_num) from None
        previous = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if (byte := _bad_byte(fields)) is not None:
            fields = BadFields(DataError(f"not valid {encoding} (byte 0x{byte:02x})", uri, reader.line_num))
        yield reader.line_num, cols, fields


def record(cols: Sequence[str], fields: Sequence[str]) -> dict[str, str]:
    """A row as a dict, or a DataError if it does not have one field per column (or is not valid text)."""
    if isinstance(fields, BadFields):
        raise fields.error
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
