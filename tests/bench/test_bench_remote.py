"""Remote bench over a real sshd on 127.0.0.1: full run, clean-up, host keys, bad targets, no injection."""

import glob
import json
import shutil
import sys

import pytest

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


def _ssh_args(server, known_hosts=None, identity=None):
    return ["--identity", identity or server.identity, "--known-hosts", known_hosts or server.known_hosts,
            "--remote-python", sys.executable]


def test_remote_bench_lands_beside_local_rows_and_cleans_up(run_copy, ssh_server, cli, tmp_path):
    before = set(glob.glob("/tmp/edgeship-bench.*"))
    out = tmp_path / "bench.json"
    result = cli("bench", run_copy, "--target", ssh_server.url, *_ssh_args(ssh_server), "--backend", "tflite",
                 "--threads", "1", "--runs", "10", "--warmup", "1", "--json", out)
    assert result.returncode == 0, result.stderr
    bench = json.loads(out.read_text())
    label = f"{ssh_server.user}@127.0.0.1:{ssh_server.port}"
    targets = {t["target"]: t for t in bench["targets"]}
    assert targets[label]["status"] == "ok" and targets["local"]["status"] == "ok"
    remote_env = targets[label]["environment"]
    assert remote_env["cores"] >= 1 and remote_env["cpu"] and "python" in remote_env["libraries"]
    remote_rows = [r for r in bench["rows"] if r["target"] == label]
    assert sorted(r["name"] for r in remote_rows) == ["tflite", "tflite_dynamic", "tflite_fp16", "tflite_int8"]
    for row in remote_rows:
        latency = row["latency_ms"]
        assert row["status"] == "ok" and 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
        assert row["runs"] == 10 and row["accuracy"] is not None
    assert set(glob.glob("/tmp/edgeship-bench.*")) == before
    assert f"**{label}**" in (run_copy / "bench.md").read_text()


def test_unreachable_target_fails_alone_and_the_others_finish(exported_run, ssh_server, cli, tmp_path):
    model = exported_run / "bundle" / "model_int8.tflite"
    out = tmp_path / "bench.json"
    result = cli("bench", model, "--target", ssh_server.url, "--target", "ssh://nobody@127.0.0.1:1",
                 *_ssh_args(ssh_server), "--runs", "5", "--warmup", "0", "--json", out)
    assert result.returncode == 1
    assert "127.0.0.1:1: unreachable" in result.stderr and "Traceback" not in result.stderr
    bench = json.loads(out.read_text())
    status = {t["target"]: t["status"] for t in bench["targets"]}
    assert status == {"local": "ok", f"{ssh_server.user}@127.0.0.1:{ssh_server.port}": "ok", "nobody@127.0.0.1:1": "failed"}


@pytest.mark.parametrize("problem, message", [
    ("mismatch", "host key mismatch"),
    ("unknown", "host key verification failed"),
    ("wrong_key", "authentication failed"),
    ("no_python", "no Python at"),
])
def test_bad_target_is_one_clear_line(exported_run, ssh_server, cli, tmp_path, problem, message):
    keygen = ssh_server.new_key
    known_hosts, identity = ssh_server.known_hosts, ssh_server.identity
    if problem == "mismatch":
        other = keygen(tmp_path / "other_host").with_suffix(".pub").read_text().split()
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{ssh_server.port} {other[0]} {other[1]}\n")
    elif problem == "unknown":
        known_hosts = tmp_path / "empty_known_hosts"
        known_hosts.write_text("")
    elif problem == "wrong_key":
        identity = keygen(tmp_path / "stranger")
    args = _ssh_args(ssh_server, known_hosts, identity)
    if problem == "no_python":
        args[-1] = "/nonexistent/python3"
    result = cli("bench", exported_run / "bundle" / "model_int8.tflite", "--target", ssh_server.url, *args,
                 "--no-local", "--runs", "3", "--warmup", "0")
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("edgeship: error: bench on")]
    assert len(failures) == 1 and message in failures[0], result.stderr
    assert "Traceback" not in result.stderr


def test_accept_new_host_key_trusts_and_records_it(exported_run, ssh_server, cli, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    result = cli("bench", exported_run / "bundle" / "model_int8.tflite", "--target", ssh_server.url,
                 *_ssh_args(ssh_server, known_hosts), "--accept-new-host-key", "--no-local", "--runs", "3",
                 "--warmup", "0")
    assert result.returncode == 0, result.stderr
    assert ssh_server.host_public_key.split()[1] in known_hosts.read_text()


def test_hostile_file_names_never_reach_a_shell(exported_run, ssh_server, cli, tmp_path):
    hostile = tmp_path / "x$(touch PWNED);'`touch PWNED2`.tflite"
    shutil.copy(exported_run / "bundle" / "model_int8.tflite", hostile)
    result = cli("bench", hostile, "--target", ssh_server.url, *_ssh_args(ssh_server), "--runs", "3", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    from pathlib import Path

    for place in (tmp_path, Path.home(), Path("/tmp")):
        assert not list(place.glob("PWNED*")), place


def test_target_without_the_runtime_gets_it_installed_in_a_temp_venv(exported_run, ssh_server, cli, tmp_path):
    """A Python on the target that lacks numpy & co: edgeship installs the runtime's packages into a venv
    inside its temp dir, benches, and removes it all."""
    import subprocess

    bare = "/usr/bin/python3"  # Debian's own Python: no numpy, no interpreters
    if subprocess.run([bare, "-c", "import numpy"], capture_output=True).returncode != 1:
        pytest.skip(f"{bare} is missing or already has numpy: the install path would not run")
    before = set(glob.glob("/tmp/edgeship-bench.*"))
    out = tmp_path / "bench.json"
    result = cli("bench", exported_run / "bundle" / "model_int8.tflite", "--target", ssh_server.url, "--no-local",
                 "--identity", ssh_server.identity, "--known-hosts", ssh_server.known_hosts, "--remote-python", bare,
                 "--runs", "5", "--warmup", "1", "--json", out, timeout=900)
    assert result.returncode == 0, result.stderr
    row = json.loads(out.read_text())["rows"][0]
    assert row["status"] == "ok" and row["runtime"] == "ai_edge_litert" and row["latency_ms"]["p50"] > 0
    assert set(glob.glob("/tmp/edgeship-bench.*")) == before


def test_profile_runs_on_the_target_with_the_one_op_models_cut_here(exported_run, ssh_server, cli, tmp_path):
    """`--profile` with a target: the board times the nodes with its runtime alone (TFLite's one-op models travel
    with the agent), and its profiles name the same nodes as this machine's."""
    out = tmp_path / "bench.json"
    result = cli("bench", exported_run / "bundle", "--target", ssh_server.url, *_ssh_args(ssh_server), "--backend",
                 "tflite,onnxruntime-cpu", "--threads", "1", "--runs", "3", "--warmup", "1", "--profile", "--json", out)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())["rows"]
    label = f"{ssh_server.user}@127.0.0.1:{ssh_server.port}"
    for name in ("tflite_int8", "tflite_fp16", "onnx_int8"):
        here = next(r["profile"] for r in rows if r["target"] == "local" and r["name"] == name and r.get("profile"))
        there = next(r["profile"] for r in rows if r["target"] == label and r["name"] == name and r.get("profile"))
        assert [n["name"] for n in there["nodes"]] == [n["name"] for n in here["nodes"]], name
        assert there["method"] == here["method"] and there["threads"] == 1 and there["p50_ms"] > 0
        assert sum(n["ms"] for n in there["nodes"]) > 0
    assert not [r for r in rows if r.get("kind") == "profile"]  # profiles ride on the timed rows, not as rows
