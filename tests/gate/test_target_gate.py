"""`edgeship gate RUN --target ssh://…`: every artifact runs on the device and its figures are gated there.

The device here is a real sshd on 127.0.0.1 (tests/sshd.py): the same machine, so the cross-platform drift
must be zero, and a target made to compute differently (images turned on their side by its Python) must
fail the gate while the host's figures still pass: the gate never passes on host figures alone.
"""

from __future__ import annotations

import glob
import json
import sys
from xml.etree import ElementTree

import pytest

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


def _ssh_args(server, python=sys.executable):
    # the tiny fixture's tflite_dynamic agrees on 31 of 32 test images on the host already: a lower floor
    return ["--identity", server.identity, "--known-hosts", server.known_hosts, "--remote-python", python,
            "--min-agreement", "0.9"]


def test_gate_on_a_target_records_and_gates_its_figures(run_copy, ssh_server, cli, tmp_path):
    from edgeship.core.schema import schema_errors
    from edgeship.runtime import Bundle
    from edgeship.runtime.backends import BACKENDS

    before = set(glob.glob("/tmp/edgeship-gate.*"))
    junit = tmp_path / "gate.xml"
    result = cli("gate", run_copy, "--target", ssh_server.url, *_ssh_args(ssh_server), "--junit", junit)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((run_copy / "report.json").read_text())
    assert schema_errors("report", report) == []
    (target,) = report["targets"]
    assert target["status"] == "ok" and target["target"] == f"ssh://{ssh_server.user}@127.0.0.1:{ssh_server.port}"
    assert target["fingerprint"]["machine"] and target["fingerprint"]["libraries"]
    from edgeship.export.formats import FORMATS

    runtime_rows = [r for r in Bundle.load(run_copy / "bundle").artifacts if r.ok and r.backend in BACKENDS
                    and FORMATS[r.name].on_device]  # the C source of tflite_int8 is judged as that file
    assert "tflite_int8_c" not in [r.name for r in runtime_rows]
    host_rows = {a["name"]: a for a in report["artifacts"]}
    assert [a["name"] for a in target["artifacts"]] == [r.name for r in runtime_rows]
    for row in target["artifacts"]:
        # the same machine and libraries: no drift, and export's own host parity figures again, image for image
        assert row["host_agreement"] == 1.0 and row["max_abs_prob_diff_vs_host"] <= 1e-6, row["name"]
        assert row["accuracy"] == pytest.approx(host_rows[row["name"]]["accuracy"])
        assert row["agreement"] == pytest.approx(host_rows[row["name"]]["agreement"])
        assert row["n_test"] == report["reference"]["n_test"] and row["sha256"] == host_rows[row["name"]]["sha256"]
    assert f"## On target {target['target']}" in (run_copy / "report.md").read_text()
    cases = [c.get("name") for c in ElementTree.parse(junit).getroot().iter("testcase")]
    assert [c for c in cases if c.startswith("ssh://")] == [f"{target['target']} {r.name}" for r in runtime_rows]
    assert set(glob.glob("/tmp/edgeship-gate.*")) == before  # the target keeps nothing

    # the report still describes the files: a plain gate passes on it
    assert cli("gate", run_copy, "--min-agreement", "0.9").returncode == 0


def test_gate_fails_when_only_the_target_is_wrong(run_copy, ssh_server, cli, tmp_path):
    """The target's Python decodes every image in negative (a sitecustomize on its path): the host's
    figures are untouched and pass, the target's fail; an unreachable second target fails on its own line."""
    twist = tmp_path / "twist"
    twist.mkdir()
    (twist / "sitecustomize.py").write_text(
        "from PIL import Image, ImageOps\n"
        "ImageOps.exif_transpose = lambda image, *a, **k: ImageOps.invert(image.convert('RGB'))\n")
    python = tmp_path / "python-on-a-bad-board"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{twist}:$PYTHONPATH" exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    result = cli("gate", run_copy, "--target", ssh_server.url, "--target", "ssh://nobody@127.0.0.1:1",
                 *_ssh_args(ssh_server, str(python)))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    host = [line for line in lines if line.startswith(("PASS", "FAIL")) and "ssh://" not in line]
    on_target = [line for line in lines if "ssh://" in line and "127.0.0.1:1" not in line]
    assert host and all(line.startswith("PASS") for line in host)
    assert on_target and all(line.startswith("FAIL") for line in on_target)
    assert any(line.startswith("FAIL ssh://nobody@127.0.0.1:1") for line in lines)
    assert "127.0.0.1:1: unreachable" in result.stderr and "Traceback" not in result.stderr
    report = json.loads((run_copy / "report.json").read_text())
    status = {t["target"]: t["status"] for t in report["targets"]}
    assert status == {f"ssh://{ssh_server.user}@127.0.0.1:{ssh_server.port}": "ok", "ssh://nobody@127.0.0.1:1": "failed"}
