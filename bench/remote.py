"""Benchmark on an edge board over SSH, with nothing but the runtime shipped there.

For each target: make a temp dir, stream a tar of `edgeship/runtime`, the harness, the agent and the
artifacts into it, check (or install) the runtime's dependencies, run the agent, read its JSON back and
remove the temp dir (the transport is core/ssh.py). Artifacts travel under generated names.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeship.targets.ssh import (  # noqa: F401 - SSHOptions/SSHTarget/RemoteError re-exported for bench's callers
    RemoteError,
    SSHOptions,
    SSHTarget,
    TargetMisbehaved,
    remote_python,
    remote_temp_dir,
    run_ssh,
    runtime_payload,
    shipped_names,
)
from edgeship.targets.messages import check_environment, measured_row, parse_line

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
        answer = parse_line(lines[-1].encode(), target.label) if lines else None
        if answer is None:
            raise RemoteError(f"{target.label}: the agent printed no result")
        return checked_answer(answer, cases, target.label)


def checked_answer(answer, cases: list[dict], label: str) -> dict:
    """The agent's {environment, rows, interrupted}, each row rebuilt from the host's case and the figures the
    board measured (core/target_messages.py); a malformed answer is TargetMisbehaved."""
    if not isinstance(answer, dict) or not isinstance(answer.get("rows"), list) or len(answer["rows"]) > len(cases):
        raise TargetMisbehaved(f"{label}: its result is not one row per case sent")
    environment = check_environment(answer.get("environment") or {}, label)
    by_id = {case["id"]: case for case in cases}
    rows = []
    for item in answer["rows"]:
        case = by_id.get(item.get("id")) if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        if case is None:
            raise TargetMisbehaved(f"{label}: a result row names no case that was sent")
        row = measured_row(item, case, label)
        if case.get("kind") == "profile" and item.get("status") == "ok":
            if not isinstance(item.get("profile"), dict):
                raise TargetMisbehaved(f"{label}: a profile row without a profile")
            row["profile"] = item["profile"]
        rows.append(row)
    return {"environment": environment, "rows": rows,
            "interrupted": answer.get("interrupted") is True}
