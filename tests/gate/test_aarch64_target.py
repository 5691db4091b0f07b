"""The Raspberry Pi's architecture in `make test`: the on-target gate and bench against an emulated aarch64
Debian bookworm (QEMU user mode, a Cortex-A72 core like a Pi 4), whose runtime comes from aarch64 wheels
with no TensorFlow. Every artifact must pass the gate there, and the cross-platform figures are recorded."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


def _args(target):
    return ["--identity", target.identity, "--known-hosts", target.known_hosts, "--remote-python", target.python]


def test_every_artifact_passes_the_gate_on_the_emulated_pi(run_copy, aarch64_target, cli):
    # the tiny fixture's tflite_dynamic agrees on 31 of 32 test images on the host already: a lower floor
    result = cli("gate", run_copy, "--target", aarch64_target.url, *_args(aarch64_target), "--min-agreement", "0.9",
                 timeout=1500)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((run_copy / "report.json").read_text())
    (target,) = report["targets"]
    assert target["status"] == "ok" and target["fingerprint"]["machine"] == "aarch64"
    assert target["fingerprint"]["emulated"] is True
    assert "tensorflow" not in target["fingerprint"]["libraries"]
    rows = {row["name"]: row for row in target["artifacts"]}
    host = {a["name"]: a for a in report["artifacts"]}
    for name, row in rows.items():
        assert row["sha256"] == host[name]["sha256"] and row["n_test"] == report["reference"]["n_test"]
        assert row["max_abs_prob_diff_vs_host"] < 0.05, (name, row["max_abs_prob_diff_vs_host"])
    for name in ("tflite_int8", "onnx_int8"):  # integer kernels: the same answers on ARM as on x86
        assert rows[name]["host_agreement"] == 1.0
    print("\naarch64 vs x86:", {n: (r["host_agreement"], r["max_abs_prob_diff_vs_host"]) for n, r in rows.items()},
          f"userland build {aarch64_target.build_seconds:.0f} s")


def test_bench_on_the_emulated_pi_is_marked_emulated(exported_run, aarch64_target, cli, tmp_path):
    out = tmp_path / "bench.json"
    result = cli("bench", exported_run / "bundle" / "model_int8.tflite", "--target", aarch64_target.url,
                 *_args(aarch64_target), "--runs", "3", "--warmup", "1", "--json", out, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    bench = json.loads(out.read_text())
    remote = next(t for t in bench["targets"] if t["target"] != "local")
    assert remote["environment"]["machine"] == "aarch64" and remote["environment"]["emulated"] is True
    rows = [r for r in bench["rows"] if r["target"] != "local"]
    assert rows and all(r["emulated"] is True for r in rows)
    # the board has the runtime's packages, not OpenVINO: its rows say so instead of failing
    assert all(r["status"] == "ok" for r in rows if r["backend"] != "openvino")
    assert all(r["status"] == "unavailable" and "openvino" in r["error"] for r in rows if r["backend"] == "openvino")
    assert all(r["emulated"] is False for r in bench["rows"] if r["target"] == "local")
