"""The one module through which ray_slt reads and writes files.

Every path argument in ray_slt is a URI: a local path (``runs/x``, ``/data/x``, ``file:///data/x``) or a
remote one (``s3://bucket/key``; any fsspec protocol works). Remote credentials and endpoints come from the
environment, as their libraries define it: for S3, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_ENDPOINT_URL`` or an instance profile; fsspec's ``FSSPEC_S3_*`` variables also apply.

Writes are atomic: a reader sees either the previous file or the complete new one, never a prefix. Locally a
temporary file in the same directory is renamed over the target; on object stores the object is uploaded in
one request (an object only becomes visible once its upload completes, and an aborted upload leaves nothing).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec

from ray_slt.errors import DataError, StorageError

_LOCAL_PROTOCOLS = {"file", "local"}
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def protocol(uri: str) -> str:
    """The fsspec protocol of ``uri`` (``"file"`` for plain paths)."""
    m = _SCHEME.match(str(uri))
    return m.group(1).lower() if m else "file"


def is_local(uri: str) -> bool:
    return protocol(uri) in _LOCAL_PROTOCOLS


def _strip_file_scheme(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def normalize(uri: str) -> str:
    """A canonical form: absolute local paths, remote URIs without trailing slashes."""
    uri = str(uri)
    if not uri:
        raise StorageError("empty path")
    if is_local(uri):
        return os.path.abspath(os.path.expanduser(_strip_file_scheme(uri)))
    return uri.rstrip("/")


def join(base: str, *parts: str) -> str:
    """Join path segments onto a local path or URI."""
    base = str(base)
    if is_local(base):
        return os.path.join(_strip_file_scheme(base), *parts)
    return posixpath.join(base.rstrip("/"), *parts)


def parent(uri: str) -> str:
    uri = str(uri).rstrip("/")
    if is_local(uri):
        return os.path.dirname(os.path.abspath(_strip_file_scheme(uri)))
    head, _, _ = uri.rpartition("/")
    return head


def basename(uri: str) -> str:
    return str(uri).rstrip("/").rpartition("/")[2]


def _fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        if is_local(uri):
            return fsspec.filesystem("file"), normalize(uri)
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as e:
        raise StorageError(f"{uri}: unsupported storage ({e})") from e


def _credential_failure(e: BaseException) -> bool:
    """Whether an error means the object store refused us for want of credentials (botocore's
    NoCredentialsError and friends, by name: botocore is an optional dependency here)."""
    return type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError")


def _storage_errors(fn):
    """Turn a remote store's credential and permission failures into one-line StorageErrors naming the URI."""
    import functools

    @functools.wraps(fn)
    def wrapper(uri, *args, **kwargs):
        try:
            return fn(uri, *args, **kwargs)
        except StorageError:
            raise
        except Exception as e:
            if _credential_failure(e):
                raise StorageError(f"{uri}: no credentials for {protocol(uri)}:// (set AWS_ACCESS_KEY_ID and "
                                   "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where an instance role "
                                   "applies)") from None  # fmt: skip
            if isinstance(e, PermissionError) and not is_local(uri):
                raise StorageError(f"{uri}: access denied ({e})") from None
            raise

    return wrapper


def _remote(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Full URI of an fsspec path on a remote filesystem."""
    proto = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    return f"{proto}://{path}"


@_storage_errors
def exists(uri: str) -> bool:
    fs, path = _fs(uri)
    if not is_local(uri):
        fs.invalidate_cache(path)
    return bool(fs.exists(path))


@_storage_errors
def isdir(uri: str) -> bool:
    fs, path = _fs(uri)
    if not is_local(uri):
        fs.invalidate_cache(path)
    return bool(fs.isdir(path))


@_storage_errors
def size(uri: str) -> int:
    fs, path = _fs(uri)
    try:
        return int(fs.size(path))
    except FileNotFoundError as e:
        raise StorageError(f"{uri}: no such file") from e


@_storage_errors
def listdir(uri: str) -> list[str]:
    """Direct children of a directory/prefix, as full URIs, sorted."""
    fs, path = _fs(uri)
    if not is_local(uri):
        fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError as e:
        raise StorageError(f"{uri}: no such directory") from e
    if is_local(uri):
        return sorted(str(e) for e in entries)
    return sorted(_remote(fs, e) for e in entries if e.rstrip("/") != path.rstrip("/"))


@_storage_errors
def glob(pattern: str) -> list[str]:
    """Files matching a glob pattern, as full URIs, sorted."""
    fs, path = _fs(pattern)
    if not is_local(pattern):
        fs.invalidate_cache()
    found = fs.glob(path)
    if is_local(pattern):
        return sorted(str(p) for p in found)
    return sorted(_remote(fs, p) for p in found)


def makedirs(uri: str) -> None:
    """Create a directory (a no-op on object stores, which have no directories)."""
    if is_local(uri):
        os.makedirs(normalize(uri), exist_ok=True)


@_storage_errors
def remove(uri: str, recursive: bool = False) -> None:
    fs, path = _fs(uri)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=recursive)


@_storage_errors
def read_bytes(uri: str) -> bytes:
    fs, path = _fs(uri)
    try:
        return fs.cat_file(path)
    except FileNotFoundError as e:
        raise StorageError(f"{uri}: no such file") from e
    except IsADirectoryError as e:
        raise StorageError(f"{uri}: is a directory, expected a file") from e
    except PermissionError as e:
        raise StorageError(f"{uri}: permission denied") from e


def decode_text(data: bytes, source: str, encoding: str = "utf-8") -> str:
    """Decode bytes strictly; invalid bytes raise a DataError naming the line and byte offset."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"not valid {encoding} (byte 0x{data[e.start]:02x} at offset {e.start})", source, line) from e
    return text[1:] if text.startswith("\ufeff") else text


def read_text(uri: str, encoding: str = "utf-8") -> str:
    return decode_text(read_bytes(uri), uri, encoding)


@contextlib.contextmanager
def open_read(uri: str, mode: str = "rb") -> Iterator[IO[Any]]:
    """Stream a file for reading (remote files are read lazily in blocks)."""
    fs, path = _fs(uri)
    try:
        f = fs.open(path, mode)
    except FileNotFoundError as e:
        raise StorageError(f"{uri}: no such file") from e
    with f:
        yield f


@contextlib.contextmanager
def atomic_write(uri: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write a file so that it appears complete or not at all.

    If the block raises, nothing is written and any previous file at ``uri`` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', not {mode!r}")
    if is_local(uri):
        target = normalize(uri)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=os.path.dirname(target))
        try:
            with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return
    fs, path = _fs(uri)
    # Spool locally, then upload in one call: an interrupted upload never becomes a visible object.
    with tempfile.NamedTemporaryFile(mode, suffix=".upload", **({"encoding": "utf-8"} if mode == "w" else {})) as f:
        yield f
        f.flush()
        try:
            fs.put_file(f.name, path)
        except (OSError, PermissionError) as e:
            raise StorageError(f"{uri}: upload failed ({e})") from e
        fs.invalidate_cache(path)


@_storage_errors
def write_bytes(uri: str, data: bytes) -> None:
    with atomic_write(uri, "wb") as f:
        f.write(data)


@_storage_errors
def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


@_storage_errors
def copy(src: str, dst: str) -> None:
    """Copy one file, atomically at the destination."""
    with open_read(src) as fin, atomic_write(dst) as fout:
        shutil.copyfileobj(fin, fout, length=1 << 20)


def _missing_reason(path: str) -> str:
    """Why a local path does not exist as a file: absent, a dangling link or a loop of links."""
    if not os.path.islink(path):
        return "no such file"
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a loop of symbolic links"
    return "a symbolic link to nothing"


@contextlib.contextmanager
def local_file(uri: str, suffix: str = "") -> Iterator[str]:
    """A local filesystem path with the contents of ``uri`` (a temporary download for remote files),
    for libraries that only open local paths (video decoders, for instance)."""
    if is_local(uri):
        path = normalize(uri)
        if not os.path.exists(path):
            raise StorageError(f"{uri}: {_missing_reason(path)}")
        yield path
        return
    fs, path = _fs(uri)
    suffix = suffix or os.path.splitext(path)[1]
    with tempfile.TemporaryDirectory(prefix="ray_slt_") as d:
        local = os.path.join(d, "data" + suffix)
        try:
            fs.get_file(path, local)
        except FileNotFoundError as e:
            raise StorageError(f"{uri}: no such file") from e
        yield local


def ensure_within(uri: str, prefix: str) -> str:
    """Return ``uri`` normalised if it lies under ``prefix``; raise otherwise.

    Used wherever a path comes from outside (an HTTP request, a manifest row pointing to media), so that
    ``..`` segments or another bucket cannot escape the allowed root.
    """
    if protocol(uri) != protocol(prefix):
        raise StorageError(f"{uri}: not under the allowed prefix {prefix}")
    if is_local(uri):
        u, p = os.path.realpath(normalize(uri)), os.path.realpath(normalize(prefix))
        if u != p and not u.startswith(p.rstrip(os.sep) + os.sep):
            raise StorageError(f"{uri}: not under the allowed prefix {prefix}")
        return u
    u, p = normalize(uri), normalize(prefix)
    path = u[len(protocol(u)) + 3 :]
    if ".." in path.split("/") or (u != p and not u.startswith(p + "/")):
        raise StorageError(f"{uri}: not under the allowed prefix {prefix}")
    return u


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(name: str) -> str:
    """A deterministic file name for an identifier (a sample id, say).

    Characters outside ``[A-Za-z0-9._-]`` become ``_`` and a short hash of the original is appended when any
    was replaced, so distinct identifiers never share a file.
    """
    cleaned = _UNSAFE.sub("_", name)
    if cleaned != name or cleaned.startswith("."):
        cleaned = f"{cleaned.lstrip('.')}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return cleaned


def unique_suffix() -> str:
    return uuid.uuid4().hex[:12]


def arrow_location(uri: str) -> tuple[str, Any]:
    """``(path, filesystem)`` for libraries that take a pyarrow filesystem (Ray Train and Tune storage): local
    paths as they are (filesystem None); remote URIs through their fsspec filesystem, so endpoints and
    credentials come from the same place as all other I/O."""
    if is_local(uri):
        return normalize(uri), None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = fsspec.core.url_to_fs(uri)
    return path, PyFileSystem(FSSpecHandler(fs))


def from_arrow_path(path: str, like: str) -> str:
    """A path that such a library returns (without the scheme for remote storage) as a URI like ``like``."""
    if is_local(like) or "://" in path:
        return path
    return f"{protocol(like)}://{path.lstrip('/')}"
