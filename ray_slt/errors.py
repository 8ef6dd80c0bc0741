"""Errors that reach users.

Every problem caused by the user's input (a path, a file, a config value, a row of a corpus table) is raised
as a :class:`RaySltError` whose message is one line saying what is wrong and where. The CLI prints that
line and exits non-zero; anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class RaySltError(Exception):
    """A problem with the user's input, described in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(RaySltError):
    """A config file or a ``key=value`` override is invalid."""


class StorageError(RaySltError):
    """A path or URI cannot be read or written."""


class DataError(RaySltError):
    """A corpus file, table row or media file is malformed.

    ``source`` names the file and ``line`` (1-based) the line or row when known, so the message always says
    where the problem is.
    """

    def __init__(self, reason: str, source: str | None = None, line: int | None = None):
        self.reason = " ".join(str(reason).split())
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + self.reason)

    def as_record(self) -> dict:
        """The error as a row of an error report."""
        return {"source": self.source, "line": self.line, "reason": self.reason}


def last_line(error: BaseException) -> str:
    """The last line of an exception's message (a remote traceback ends with the error itself), or its type."""
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
