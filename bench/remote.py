"""Benchmark on an edge board over SSH, with nothing but the runtime shipped there.

For each target: make a temp dir, stream a tar of `edgeship/runtime`, the harness, the agent and the
artifacts into it, check (or install) the runtime's dependencies, run the agent, read its JSON back and
remove the temp dir (the transport is core/ssh.py). Artifacts travel under generated names.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from edgeship.core.ssh import (  # noqa: F401 - SSHOptions/SSHTarget/RemoteError re-exported for bench's callers
    RemoteError,
    SSHOptions,
    SSHTarget,
    add_bytes,
    remote_python,
    remote_temp_dir,
    run_ssh,
    runtime_files,
)


def _package_files() -> dict[str, Path]:
    """The files an agent needs: the runtime package, the harness and the agent itself."""
    bench_dir = Path(__file__).parent
    files = runtime_files()
    files.update({"edgeship/bench/harness.py": bench_dir / "harness.py", "edgeship/bench/agent.py": bench_dir / "agent.py"})
    return files


def build_payload(cases: list[dict], remote_dir: str) -> tuple[bytes, list[dict]]:
    """A tar of code + artifacts (under generated names) and the cases rewritten to remote paths."""
    buffer = io.BytesIO()
    remote_cases, shipped = [], {}
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("edgeship/__init__.py", "edgeship/bench/__init__.py"):
            add_bytes(tar, name, b"")
        for arcname, path in _package_files().items():
            tar.add(path, arcname=arcname)
        for case in cases:
            local = str(case["path"])
            if local not in shipped:
                shipped[local] = f"artifacts/a{len(shipped)}{Path(local).suffix.lower()}"
                tar.add(local, arcname=shipped[local])
            remote_cases.append({**case, "path": f"{remote_dir}/{shipped[local]}"})
        add_bytes(tar, "cases.json", json.dumps(remote_cases).encode())
    return buffer.getvalue(), remote_cases


def bench_on_target(target: SSHTarget, options: SSHOptions, cases: list[dict]) -> dict:
    """Run the cases on one target. Returns {"environment", "rows", "interrupted"} from its agent."""
    with remote_temp_dir(target, options, "edgeship-bench") as remote_dir:
        payload, _ = build_payload(cases, remote_dir)
        run_ssh(target, options, ["tar", "-x", "-f", "-", "-C", remote_dir], stdin=payload, timeout=600)
        python = remote_python(target, options, remote_dir)
        output = run_ssh(target, options, ["env", f"PYTHONPATH={remote_dir}", python,
                                           f"{remote_dir}/edgeship/bench/agent.py", "many", f"{remote_dir}/cases.json"])
        lines = output.strip().splitlines()
        try:
            return json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError) as exc:
            raise RemoteError(f"{target.label}: the agent printed no result") from exc
