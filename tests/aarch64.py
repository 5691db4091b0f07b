"""An aarch64 board on this x86 machine: a Debian bookworm arm64 userland run under QEMU user-mode emulation
(binfmt_misc), with its own sshd on a loopback port, for the on-target gate and bench tests.

Cold, it installs qemu-user-static from bookworm-backports through a private apt configuration (bookworm's
QEMU 7.2 segfaults on `import onnxruntime`), debootstraps the userland, trusts the host's extra CA
certificates and pip-installs the runtime's packages into a venv there; the result is cached outside the
repository under a key of its recipe, so a second run only starts sshd. Emulating a Raspberry Pi 4 core
(QEMU_CPU=cortex-a72): QEMU's default `max` CPU changed ORT dynamic-int8 results by 1.8e-3.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# tests/sshd.py, loaded first by conftest under this name: one set of key, port and start-up helpers
from edgeship_test_sshd import apt_lock, free_port, keygen, wait_for_port, write_known_hosts

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"  # the mirror this machine's apt configuration names
DEB_PACKAGES = ("python3", "python3-venv", "openssh-server", "ca-certificates")
PIP_PACKAGES = ("numpy", "pillow", "flatbuffers", "ai-edge-litert", "onnxruntime")
QEMU_CPU = "cortex-a72"
VENV = "/opt/edgeship-venv"
RECIPE = {"suite": SUITE, "arch": "arm64", "deb": DEB_PACKAGES, "pip": PIP_PACKAGES, "venv": VENV, "version": 1}
CACHE = Path(os.environ.get("EDGESHIP_AARCH64_CACHE", Path.home() / ".cache" / "edgeship-aarch64"))
APT_DIR = Path("/var/cache/edgeship-apt")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
MIN_QEMU = 8


class Unavailable(Exception):
    """Why an emulated aarch64 target cannot be had on this machine (the tests skip with this reason)."""


def _run(command, timeout=900, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", **kwargs.pop("env", {})}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} exited {done.returncode}: {done.stderr[-800:]}")
    return done


def _qemu_version() -> int:
    binary = shutil.which("qemu-aarch64-static")
    if binary is None:
        return 0
    match = re.search(r"version (\d+)", subprocess.run([binary, "--version"], capture_output=True, text=True).stdout)
    return int(match.group(1)) if match else 0


def ensure_tools() -> None:
    """qemu-user-static >= 8 (from bookworm-backports, via a private apt configuration) and debootstrap."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable("building an aarch64 userland needs root and apt-get")
    with apt_lock():
        _install_tools()


def _install_tools() -> None:
    if shutil.which("debootstrap") is None:
        _run(["apt-get", "update", "-q"])
        _run(["apt-get", "install", "-y", "-q", "debootstrap"])
    if _qemu_version() >= MIN_QEMU:
        return
    (APT_DIR / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (APT_DIR / "sources.list").write_text(f"deb {MIRROR} {SUITE}-backports main\n")
    private = ["-o", f"Dir::Etc::SourceList={APT_DIR / 'sources.list'}",
               "-o", "Dir::Etc::SourceParts=/etc/apt/sources.list.d", "-o", f"Dir::State::Lists={APT_DIR / 'lists'}"]
    _run(["apt-get", *private, "update", "-q"])
    _run(["apt-get", *private, "install", "-y", "-q", "-t", f"{SUITE}-backports", "qemu-user-static"])
    if _qemu_version() < MIN_QEMU:
        raise Unavailable(f"qemu-user-static {MIN_QEMU}+ could not be installed from {SUITE}-backports")


def register_binfmt() -> None:
    """Let the kernel run aarch64 ELF files through QEMU (fix-binary, so it works inside the chroot too)."""
    if not (BINFMT / "register").exists():
        try:
            _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
        except RuntimeError as exc:
            raise Unavailable(f"binfmt_misc cannot be mounted here: {exc}") from None
    if (BINFMT / "qemu-aarch64").exists():
        return
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
    if not conf.is_file():
        raise Unavailable(f"{conf} is missing: qemu-user-static did not install its binfmt entry")
    try:
        (BINFMT / "register").write_text(conf.read_text().strip() + "\n")
    except OSError as exc:
        raise Unavailable(f"binfmt_misc refused the aarch64 entry: {exc}") from None


def _chroot(root: Path, *command, timeout=1800) -> subprocess.CompletedProcess:
    return _run(["chroot", str(root), *command], timeout=timeout, env={"QEMU_CPU": QEMU_CPU, "HOME": "/root"})


def userland() -> tuple[Path, float]:
    """The cached userland for this recipe (built when missing), and the seconds building took (0 if cached)."""
    key = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:16]
    root = CACHE / key
    if (root / ".edgeship-ready").is_file():
        return root, 0.0
    started = time.time()
    partial = CACHE / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(DEB_PACKAGES)}", SUITE,
          str(partial), MIRROR], timeout=1800)
    extra = partial / "usr/local/share/ca-certificates"
    for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(cert, extra / cert.name)  # pip behind this machine's TLS proxy needs them
    shutil.copy("/etc/resolv.conf", partial / "etc/resolv.conf")
    _chroot(partial, "update-ca-certificates")
    _chroot(partial, "python3", "-m", "venv", VENV)
    _chroot(partial, f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check", *PIP_PACKAGES, timeout=2400)
    (partial / ".edgeship-ready").write_text(json.dumps(RECIPE))
    partial.rename(root)
    return root, time.time() - started


@dataclass
class EmulatedTarget:
    root: Path
    port: int
    identity: Path
    known_hosts: Path
    process: subprocess.Popen
    build_seconds: float
    python: str = f"{VENV}/bin/python"
    user: str = "root"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        (self.root / "run" / f"edgeship_sshd_{self.port}").unlink(missing_ok=True)
        if any((self.root / "run").glob("edgeship_sshd_*")):
            return  # another pytest worker's sshd still runs in this userland: its /dev and /proc stay
        for mount in ("dev", "proc"):
            subprocess.run(["umount", "-l", str(self.root / mount)], capture_output=True)


def start_target(workdir: Path) -> EmulatedTarget:
    """Build (or reuse) the userland and start its sshd, itself an aarch64 binary under QEMU."""
    ensure_tools()
    register_binfmt()
    root, seconds = userland()
    for mount, args in (("proc", ["-t", "proc", "proc"]), ("dev", ["--bind", "/dev"])):
        if not os.path.ismount(root / mount):
            _run(["mount", *args, str(root / mount)])
    workdir.mkdir(parents=True, exist_ok=True)
    user_key = keygen(workdir / "user_key")
    host_key = keygen(workdir / "host_key")
    ssh_dir = root / "etc/ssh"
    # One userland serves every pytest worker: each sshd gets its own host key, authorized keys and config by port
    # (sshd re-reads its host key per connection; a shared file let one worker's key replace another's)
    port = free_port()
    key, config, authorized = f"edgeship_host_key_{port}", f"sshd_config_edgeship_{port}", f"authorized_keys_{port}"
    shutil.copy(host_key, ssh_dir / key)
    shutil.copy(f"{host_key}.pub", ssh_dir / f"{key}.pub")
    (ssh_dir / key).chmod(0o600)
    (root / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
    (root / "root/.ssh" / authorized).write_text((workdir / "user_key.pub").read_text())
    (root / "run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    (root / "run" / f"edgeship_sshd_{port}").write_text(str(os.getpid()))
    (ssh_dir / config).write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey /etc/ssh/{key}",
        f"AuthorizedKeysFile /root/.ssh/{authorized}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        f"SetEnv QEMU_CPU={QEMU_CPU}", "LogLevel ERROR", ""]))
    process = subprocess.Popen(["chroot", str(root), "/usr/sbin/sshd", "-D", "-e", "-f", f"/etc/ssh/{config}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "QEMU_CPU": QEMU_CPU})
    wait_for_port(process, port, 60, "the emulated sshd")
    known_hosts, _ = write_known_hosts(workdir, port, host_key)
    return EmulatedTarget(root, port, user_key, known_hosts, process, seconds)
