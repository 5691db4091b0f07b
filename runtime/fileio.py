"""Atomic writes and hashing: a crash or Ctrl-C never leaves a half-written file behind."""

from __future__ import annotations

import hashlib
import json
import os
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


def read_json(path: str | os.PathLike, error: type[Exception], message: str) -> Any:
    """The JSON value in PATH, or ERROR("PATH: MESSAGE (why)"): one way to read every JSON file edgeship is
    handed (a report, a bundle manifest, a bench baseline, a run's state), with one shape of message."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: {message} ({exc})") from exc


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
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
    """(total bytes, sha256 over every file's relative path and sha256) of a directory."""
    root, digest, size = Path(path), hashlib.sha256(), 0
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        size += file.stat().st_size
        digest.update(f"{file.relative_to(root).as_posix()}\0{sha256_file(file)}\n".encode("utf-8"))
    return size, digest.hexdigest()
