"""A real OpenSSH server on 127.0.0.1 with throwaway host and user keys, for the remote-bench tests.

Installs Debian's openssh-server when it is missing and we are root (CI machines start without it);
otherwise the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
APT_LOCK = Path("/var/lock/edgeship-tests-apt.lock")


@contextlib.contextmanager
def apt_lock():
    """One apt-get at a time across test processes (`make test` runs two pytest workers): dpkg's own lock
    makes a second concurrent install fail instead of waiting."""
    APT_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(APT_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_or_install(candidates: tuple[str, ...], package: str) -> tuple[str | None, str]:
    """(the first of CANDIDATES that exists, "") after installing Debian's PACKAGE when none does and we are root;
    (None, why) otherwise. CI machines start without the servers and browsers some tests need."""
    def found() -> str | None:
        return next((p for p in candidates if os.path.exists(p)), None)

    if found():
        return found(), ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, f"{package} is not installed and cannot be installed here (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with apt_lock():
        for command in ([], ["apt-get", "install", "-y", "-q", package], ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", package]):
            if command:
                subprocess.run(command, capture_output=True, env=env, timeout=900)
            if found():  # another worker may have
                return found(), ""
    return None, f"apt-get could not install {package}"


def find_or_install_sshd() -> tuple[str | None, str]:
    on_path = shutil.which("sshd")
    return (on_path, "") if on_path else find_or_install(SSHD_CANDIDATES, "openssh-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> Path:
    path.unlink(missing_ok=True)  # a reused folder: ssh-keygen would ask before overwriting
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, capture_output=True)
    return path


def wait_for_port(process: subprocess.Popen, port: int, seconds: float, what: str = "sshd") -> None:
    """Until PROCESS accepts connections on PORT (an emulated sshd takes longer to start than a native one)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {process.stderr.read().decode(errors='replace')[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)


def write_known_hosts(workdir: Path, port: int, host_key: Path) -> tuple[Path, str]:
    """(known_hosts file trusting HOST_KEY for 127.0.0.1:PORT, the public key as 'type base64')."""
    public = Path(f"{host_key}.pub").read_text().split()
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
    return known_hosts, f"{public[0]} {public[1]}"


@dataclass
class SSHServer:
    port: int
    user: str
    identity: Path
    known_hosts: Path
    host_public_key: str
    process: subprocess.Popen

    @staticmethod
    def new_key(path: Path) -> Path:
        return keygen(path)

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"


def start_sshd(sshd: str, workdir: Path) -> SSHServer:
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, user_key = keygen(workdir / "host_key"), keygen(workdir / "user_key")
    (workdir / "authorized_keys").write_text((workdir / "user_key.pub").read_text())
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {workdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "PermitRootLogin prohibit-password",
        "StrictModes no", "UsePAM no", "LogLevel ERROR", ""]))
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation directory
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    wait_for_port(process, port, 15)
    known_hosts, public = write_known_hosts(workdir, port, host_key)
    return SSHServer(port, getpass.getuser(), user_key, known_hosts, public, process)
