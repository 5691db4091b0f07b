"""A board is not trusted: whatever answers as the agent over SSH can hang, flood, nest JSON thousands deep or send
figures of the wrong type. The gate and bench stop in bounded time with one line naming the target and exit 2,
and nothing the board sent reaches report.json or bench.json.

The board is a fake `ssh` first on PATH: it runs the honest steps (mktemp, tar, the Python checks, rm) here, and
answers the agent's command itself with the scenario in $HOSTILE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ..cli_checks import one_line_exit_2

pytestmark = pytest.mark.slow

FAKE_SSH = r'''#!PYTHON
import os, shlex, sys, time
remote = sys.argv[-1]
argv = shlex.split(remote)
scenario = os.environ.get("HOSTILE", "")
agent = "edgeship.runtime.remote_eval" in remote or "agent.py" in remote
if not agent:
    os.execvp(argv[0], argv)  # the honest steps run here
out = sys.stdout
if "remote_eval" in remote:
    sys.stdin.buffer.read()
    names = [a["name"] for a in __import__("json").load(open(argv[-1]))]
    header = {"environment": {"machine": "pwned"}, "artifacts": {n: {"sha256": "0" * 64, "runtime": "x"} for n in names}}
else:
    header = None
def say(text):
    out.write(text + "\n"); out.flush()
if scenario == "hang":
    if header: say(__import__("json").dumps(header))
    time.sleep(3600)
elif scenario == "deep":
    say("[" * 200000 + "]" * 200000)
elif scenario == "flood":
    out.write("A" * (9 << 20)); out.flush()
elif scenario == "bad_header":
    header["environment"] = {"machine": {"x": ["<script>"] * 3}}
    say(__import__("json").dumps(header))
elif scenario == "bad_row":
    cases = __import__("json").load(open(argv[-1]))
    say(__import__("json").dumps({"environment": {"machine": "pwned"},
        "rows": [{"id": c["id"], "status": "ok", "latency_ms": {"p50": "<img src=x onerror=alert(1)>"}} for c in cases]}))
elif scenario == "bad_type":
    cases = __import__("json").load(open(argv[-1]))
    say(__import__("json").dumps({"environment": "pwned", "rows": [{"id": c["id"]} for c in cases]}))
'''


@pytest.fixture()
def fake_ssh(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "ssh"
    script.write_text(FAKE_SSH.replace("PYTHON", sys.executable, 1))
    script.chmod(0o755)
    return folder


def _run(fake_ssh, scenario, *args, timeout=300):
    env = {**os.environ, "PATH": f"{fake_ssh}{os.pathsep}{os.environ['PATH']}", "HOSTILE": scenario}
    return subprocess.run([sys.executable, "-m", "edgeship", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


TARGET = "ssh://pi@board.invalid"


@pytest.mark.parametrize("scenario, words", [
    ("deep", "nested too deep"),
    ("flood", "bytes or more"),
    ("bad_header", "environment machine"),
])
def test_the_gate_refuses_a_board_that_breaks_the_protocol(run_copy, fake_ssh, scenario, words):
    before = (run_copy / "report.json").read_text()
    done = _run(fake_ssh, scenario, "gate", run_copy, "--target", TARGET, "--remote-python", sys.executable)
    one_line_exit_2(done, "pi@board.invalid:22", words)
    after = json.loads((run_copy / "report.json").read_text())
    assert "pwned" not in json.dumps(after) and "<script>" not in json.dumps(after)  # nothing it sent was kept
    (record,) = after["targets"]
    assert record["status"] == "failed" and json.loads(before).get("artifacts") == after["artifacts"]


def test_a_board_that_hangs_is_given_up_after_the_idle_deadline(run_copy, fake_ssh, monkeypatch):
    from edgeship.targets.ssh import SSHOptions, TargetMisbehaved
    from edgeship.export.target_gate import evaluate_on_targets

    monkeypatch.setenv("PATH", f"{fake_ssh}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOSTILE", "hang")
    started = time.monotonic()
    with pytest.raises(TargetMisbehaved, match="sent nothing for 3 s"):
        evaluate_on_targets(run_copy, [TARGET], SSHOptions(remote_python=sys.executable, idle_timeout=3))
    assert time.monotonic() - started < 120


@pytest.mark.parametrize("scenario, words", [
    ("bad_row", "latency_ms p50"),
    ("bad_type", "environment"),
    ("deep", "nested too deep"),
])
def test_bench_refuses_a_board_that_breaks_the_protocol(exported_run, fake_ssh, tmp_path, scenario, words):
    out = tmp_path / "bench"
    done = _run(fake_ssh, scenario, "bench", exported_run / "bundle" / "model_int8.tflite", "--target", TARGET,
                "--no-local", "--runs", "2", "--remote-python", sys.executable, "--out", out)
    one_line_exit_2(done, "pi@board.invalid:22", words)
    written = (out / "bench.json").read_text() if (out / "bench.json").exists() else ""
    assert "pwned" not in written and "onerror" not in written
