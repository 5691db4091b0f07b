"""Atomic writes and hashing: a crash or Ctrl-C never leaves a half-written file behind."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_mode(path: Path, directory: bool = False) -> int:
    """The mode a plain open()/mkdir() would give PATH (its current mode if it exists): mkstemp's 0600
    would hide an artifact from the service account that runs it on the device."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return (0o777 if directory else 0o666) & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, default_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


JSON_MAX_DEPTH = 64  # edgeship's own files nest 6 deep; thousands of `[` would end in a RecursionError
JSON_MAX_BYTES = 256 << 20  # a report of 100,000 test images is about 30 MB


def json_depth_problem(text: str, limit: int = JSON_MAX_DEPTH) -> str | None:
    """'nested N levels deep' when TEXT's brackets (outside strings) go deeper than LIMIT, else None. Checked
    before json.loads, whose recursion (and every walk over the result) a hostile file could exhaust."""
    if text.count("[") + text.count("{") <= limit:
        return None
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return f"nested more than {limit} levels deep"
        elif token in "]}":
            depth -= 1
    return None


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def loads_json(text: str | bytes, source: str, error: type[Exception], message: str = "not valid JSON") -> Any:
    """json.loads for a document someone else wrote: bad UTF-8, too deep a nesting (which would exhaust
    json.loads' recursion and every walk over the result) or bad JSON is ERROR("SOURCE: MESSAGE (why)"), never
    a RecursionError traceback."""
    try:
        text = text.decode("utf-8") if isinstance(text, bytes) else text
    except UnicodeDecodeError as exc:
        raise error(f"{source}: {message} ({exc})") from exc
    problem = json_depth_problem(text)
    if problem:
        raise error(f"{source}: {message} ({problem})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise error(f"{source}: {message} ({str(exc)[:200]})") from exc


def read_json(path: str | os.PathLike, error: type[Exception], message: str) -> Any:
    """The JSON value in PATH, or ERROR("PATH: MESSAGE (why)"): one way to read every JSON file edgeship is
    handed (a report, a bundle manifest, a bench baseline, a run's state), with one shape of message. The file
    must be a regular file (a FIFO or /dev/zero would hang or fill memory) of sane size and nesting."""
    try:
        data = read_regular_file(path, limit=JSON_MAX_BYTES)
    except (OSError, ValueError) as exc:
        raise error(f"{path}: {message} ({exc})") from exc
    return loads_json(data, str(path), error, message)


class NotRegularFile(ValueError):
    """A path that should hold a plain file is a FIFO, a device, a directory or (where refused) a link."""


def read_regular_file(path: str | os.PathLike, limit: int | None = None, follow_links: bool = True) -> bytes:
    """The bytes of PATH, read through one descriptor that was checked to be a regular file first: a FIFO or
    a device (a link to /dev/zero) would hang or never end. FOLLOW_LINKS False refuses a symbolic link (files
    inside a bundle); LIMIT refuses a larger file before reading it."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow_links and os.path.islink(path):
            raise NotRegularFile(f"{path}: is a symbolic link; a bundle holds its files itself") from None
        raise exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"{path}: is not a regular file ({_file_kind(info.st_mode)})")
        if limit is not None and info.st_size > limit:
            raise NotRegularFile(f"{path}: {info.st_size} bytes, more than the {limit} this file may hold")
        return handle.read()


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a regular file's bytes (a FIFO or a device is refused, never read forever)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{path}: is not a regular file ({_file_kind(mode)})")
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_replace_tree(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy directory `source` to `target`, swapping it in by renames: readers see the old tree or the
    new one, never a mix (a SavedModel is a directory, not a file)."""
    import shutil

    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old = target.with_name(f".{target.name}.old")
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        os.chmod(staging, default_mode(target, directory=True))
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not target.exists():
            os.replace(old, target)  # put the previous tree back
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target


def tree_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(total bytes, sha256 over every file's relative path and sha256) of a directory. Every entry must be
    a plain file or folder: a link could lead the digest, and whatever loads the tree, outside it."""
    root, digest, size = Path(path), hashlib.sha256(), 0
    for entry in root.rglob("*"):
        mode = entry.lstat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise NotRegularFile(f"{entry}: is {'a symbolic link' if stat.S_ISLNK(mode) else _file_kind(mode)} "
                                 f"inside {root.name}; a bundle holds its files itself")
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        size += file.stat().st_size
        digest.update(f"{file.relative_to(root).as_posix()}\0{sha256_file(file)}\n".encode("utf-8"))
    return size, digest.hexdigest()
