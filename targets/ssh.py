"""SSH to edge boards: parse targets, run argument lists (never shell strings), ship the runtime, set up Python.

bench (latency on a board) and export (the on-target gate) share this transport. Host keys are checked by
default; every remote command is one `shlex.join`ed argument list, so no user-supplied name reaches a shell.
"""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgeship.runtime.errors import EdgeshipError, UsageError

_SAFE_HOST = re.compile(r"^[A-Za-z0-9._:-]+$")
_SAFE_USER = re.compile(r"^[A-Za-z0-9._-]+$")
_TEMP_DIR = re.compile(r"^/[A-Za-z0-9._/-]+$")
RUNTIME_REQUIREMENTS = ("numpy", "pillow", "flatbuffers", "ai-edge-litert", "onnxruntime")
DEPENDENCY_CHECK = "import numpy, PIL, flatbuffers\ntry:\n import ai_edge_litert\nexcept ImportError:\n import onnxruntime"


class RemoteError(EdgeshipError):
    """One target failed; the others go on."""


class TargetMisbehaved(RemoteError):
    """A target answered outside the protocol (hung, flooded, sent malformed or out-of-range data): nothing it
    sent is kept, and the command ends with exit 2 naming the target once the other targets are done."""

    exit_code = 2


MAX_OUTPUT_BYTES = 64 << 20  # what one remote command may print before it is stopped


@dataclass(frozen=True)
class SSHTarget:
    host: str
    user: str | None = None
    port: int = 22

    @classmethod
    def parse(cls, url: str) -> "SSHTarget":
        parts = urlsplit(url)
        try:
            port = parts.port or 22
        except ValueError as exc:
            raise UsageError(f"{url}: bad port") from exc
        host, user = parts.hostname or "", parts.username
        if parts.scheme != "ssh" or not host or parts.path not in ("", "/") or parts.password:
            raise UsageError(f"{url}: expected ssh://[user@]host[:port]")
        if not _SAFE_HOST.match(host) or (user is not None and not _SAFE_USER.match(user)):
            raise UsageError(f"{url}: host and user may contain only letters, digits and . _ - :")
        return cls(host, user, port)

    @property
    def label(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"


@dataclass(frozen=True)
class SSHOptions:
    accept_new_host_key: bool = False
    known_hosts: str | None = None
    identity: str | None = None
    remote_python: str | None = None  # default: python3; either way the runtime is installed if it lacks it
    connect_timeout: int = 10
    timeout: float = 1800
    idle_timeout: float = 300  # the on-target gate: longest silence from the agent before the target is given up


def ssh_command(target: SSHTarget, options: SSHOptions, remote_argv: list[str]) -> list[str]:
    command = ["ssh", "-p", str(target.port), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={options.connect_timeout}",
               "-o", f"StrictHostKeyChecking={'accept-new' if options.accept_new_host_key else 'yes'}",
               "-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
    if options.known_hosts:
        command += ["-o", f"UserKnownHostsFile={options.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
    if options.identity:
        command += ["-i", options.identity, "-o", "IdentitiesOnly=yes"]
    destination = f"{target.user}@{target.host}" if target.user else target.host
    return command + [destination, "--", shlex.join(remote_argv)]


def _explain(stderr: str) -> str:
    text = stderr.strip()
    lowered = text.lower()
    if "remote host identification has changed" in lowered or "host key for" in lowered and "has changed" in lowered:
        return "host key mismatch: the target's key differs from known_hosts (possible man-in-the-middle)"
    if "host key verification failed" in lowered:
        return "host key verification failed: unknown host key (add it to known_hosts, or --accept-new-host-key)"
    if "permission denied" in lowered:
        return "authentication failed: the target did not accept the key"
    for marker in ("connection refused", "timed out", "no route to host", "could not resolve", "network is unreachable"):
        if marker in lowered:
            return f"unreachable: {text.splitlines()[-1]}"
    return text.splitlines()[-1] if text else "ssh failed"


def run_ssh(target, options, remote_argv, stdin: bytes | None = None, timeout: float | None = None) -> str:
    """REMOTE_ARGV's standard output; at most MAX_OUTPUT_BYTES of it (a target that floods is stopped)."""
    import threading

    try:
        proc = subprocess.Popen(ssh_command(target, options, remote_argv), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise RemoteError("the ssh client is not installed here") from exc
    outputs = {}

    def drain(name, stream):
        outputs[name] = stream.read(MAX_OUTPUT_BYTES + 1)
        if len(outputs[name]) > MAX_OUTPUT_BYTES:
            proc.kill()

    def feed():
        try:
            if stdin:
                proc.stdin.write(stdin)
            proc.stdin.close()
        except OSError:
            pass  # it stopped reading: its exit status says why

    readers = [threading.Thread(target=drain, args=(n, getattr(proc, n)), daemon=True) for n in ("stdout", "stderr")]
    for thread in [*readers, threading.Thread(target=feed, daemon=True)]:  # a target that never reads cannot block
        thread.start()
    try:
        proc.wait(timeout=timeout or options.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RemoteError(f"{target.label}: timed out running {remote_argv[0]}") from None
    for reader in readers:
        reader.join(timeout=10)
    stdout, stderr = outputs.get("stdout", b""), outputs.get("stderr", b"").decode("utf-8", "replace")
    if len(stdout) > MAX_OUTPUT_BYTES or len(outputs.get("stderr", b"")) > MAX_OUTPUT_BYTES:
        raise TargetMisbehaved(f"{target.label}: `{remote_argv[0]}` printed more than {MAX_OUTPUT_BYTES >> 20} MiB")
    if proc.returncode == 255:
        raise RemoteError(f"{target.label}: {_explain(stderr)}")
    if proc.returncode != 0:
        raise RemoteError(f"{target.label}: `{remote_argv[0]}` exited {proc.returncode}: "
                          f"{(stderr.strip().splitlines() or ['no output'])[-1][:300]}")
    return stdout.decode("utf-8", "replace")


def remote_python(target: SSHTarget, options: SSHOptions, remote_dir: str) -> str:
    """A Python on the target with the runtime's packages: --remote-python (default python3) when it has them,
    else a venv of its own in REMOTE_DIR, installed from the target's package index."""
    python = options.remote_python or "python3"
    try:
        run_ssh(target, options, [python, "-c", "import sys; assert sys.version_info >= (3, 9)"], timeout=60)
    except RemoteError as exc:
        if "exited 127" in str(exc) or "not found" in str(exc).lower() or "no such file" in str(exc).lower():
            raise RemoteError(f"{target.label}: no Python at {python!r} on the target (use --remote-python PATH)") from exc
        raise
    try:
        run_ssh(target, options, [python, "-c", DEPENDENCY_CHECK], timeout=120)
        return python
    except RemoteError:
        pass  # this Python lacks the runtime's packages: give it a venv of its own in our temp dir
    venv = f"{remote_dir}/venv"
    run_ssh(target, options, [python, "-m", "venv", venv], timeout=300)
    run_ssh(target, options, [f"{venv}/bin/python", "-m", "pip", "install", "--quiet", *RUNTIME_REQUIREMENTS], timeout=1800)
    return f"{venv}/bin/python"




def _runtime_files() -> dict[str, Path]:
    """The device package as it ships: edgeship/runtime (with its vendored metadata schema)."""
    import edgeship.runtime

    runtime_dir = Path(edgeship.runtime.__file__).parent
    files = {f"edgeship/runtime/{p.name}": p for p in sorted(runtime_dir.glob("*.py"))}
    files.update({f"edgeship/runtime/vendor/{p.name}": p for p in sorted((runtime_dir / "vendor").glob("*.py"))})
    return files


def shipped_names(paths) -> dict[str, str]:
    """Each distinct local file under a generated relative name (artifacts/a0.tflite, …), so that no
    user-supplied file name ever reaches the target's shell."""
    names: dict[str, str] = {}
    for path in map(str, paths):
        names.setdefault(path, f"artifacts/a{len(names)}{Path(path).suffix.lower()}")
    return names


def runtime_payload(files: dict[str, Path], documents: dict[str, bytes]) -> bytes:
    """A tar for a target's temp dir: the edgeship package with its runtime, FILES (name there -> path
    here: agent code, artifacts under shipped_names) and small DOCUMENTS (name there -> bytes)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for arcname, path in {**_runtime_files(), **files}.items():
            tar.add(path, arcname=arcname)
        for arcname, data in {"edgeship/__init__.py": b"", **documents}.items():
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@contextmanager
def remote_temp_dir(target: SSHTarget, options: SSHOptions, prefix: str):
    """A fresh temp dir on the target, removed afterwards whatever happens."""
    remote_dir = run_ssh(target, options, ["mktemp", "-d", f"/tmp/{prefix}.XXXXXXXX"], timeout=60).strip()
    if not _TEMP_DIR.match(remote_dir):
        raise RemoteError(f"{target.label}: mktemp gave an unexpected path {remote_dir!r}")
    try:
        yield remote_dir
    finally:
        try:
            run_ssh(target, options, ["rm", "-rf", "--", remote_dir], timeout=60)
        except RemoteError:
            pass
