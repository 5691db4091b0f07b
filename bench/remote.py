"""Benchmark on an edge board over SSH, with nothing but the runtime shipped there.

For each target: make a temp dir, stream a tar of `edgeship/runtime`, the harness, the agent and the
artifacts into it, check (or install) the runtime's dependencies, run the agent, read its JSON back and
remove the temp dir (the transport is core/ssh.py). Artifacts travel under generated names.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeship.core.ssh import (  # noqa: F401 - SSHOptions/SSHTarget/RemoteError re-exported for bench's callers
    RemoteError,
    SSHOptions,
    SSHTarget,
    remote_python,
    remote_temp_dir,
    run_ssh,
    runtime_payload,
    shipped_names,
)

AGENT_CODE = ("harness.py", "agent.py")  # what the agent needs besides the runtime


def build_payload(cases: list[dict], remote_dir: str) -> tuple[bytes, list[dict]]:
    """A tar of code + artifacts (under generated names) and the cases rewritten to remote paths."""
    names = shipped_names(case["path"] for case in cases)
    remote_cases = [{**case, "path": f"{remote_dir}/{names[str(case['path'])]}"} for case in cases]
    documents = {"edgeship/bench/__init__.py": b""}
    for index, case in enumerate(remote_cases):  # --profile: the one-op models cut on the host, as files there
        if case.get("op_models"):
            shipped = [f"profile/c{index}_op{k}.tflite" if data else None for k, data in enumerate(case["op_models"])]
            documents.update({name: data for name, data in zip(shipped, case["op_models"]) if name})
            case["op_models"] = [f"{remote_dir}/{name}" if name else None for name in shipped]
    bench_dir = Path(__file__).parent
    files = {f"edgeship/bench/{name}": bench_dir / name for name in AGENT_CODE}
    files.update({name: Path(local) for local, name in names.items()})
    payload = runtime_payload(files, {**documents, "cases.json": json.dumps(remote_cases).encode()})
    return payload, remote_cases


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
