"""Faults users meet: a SIGKILLed train or export, two exports at once, a full disk. After each, the gate
either refuses or every figure it passes on matches the files on disk, and a rerun completes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ..conftest import REPO, run_cli

KILL_SEEDS_EXPORT = 6
KILL_SEEDS_TRAIN = 4
TRAIN_ARGS = ("--image-size", "32", "--epochs", "3", "--batch-size", "16", "--unknown-recall", "0")
EXPORT_FORMATS = "tflite,tflite_int8,onnx,saved_model"
LOOSE = ("--max-drop", "100", "--min-agreement", "0")


def _popen(*args) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "EDGESHIP_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, "-m", "edgeship", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _sha256(path: Path) -> str:
    """Computed here, independently of edgeship: a file's sha256, or a directory's over (path, sha256) lines."""
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path).as_posix()}\0{_sha256(file)}\n".encode())
        return digest.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_gate_honest(run: Path) -> str:
    """'refused' when the gate refuses the run, else 'passes' after checking that every figure it would
    pass on belongs to the bytes on disk now."""
    from edgeship.core.integrity import load_verified_report
    from edgeship.runtime.errors import EdgeshipError

    try:
        report = load_verified_report(run)[0].to_json()
    except EdgeshipError:
        return "refused"
    bundle = json.loads((run / "bundle" / "edgeship.json").read_text())
    records = {r["name"]: r for r in bundle["artifacts"]}
    assert report["model_sha256"] == _sha256(run / "bundle" / "model.keras")
    assert report["split_sha256"] == _sha256(run / "bundle" / "splits.csv")
    assert report["labels"] == bundle["labels"]
    for row in report["artifacts"]:
        if row.get("status", "ok") == "ok":
            assert row["sha256"] == _sha256(run / row["path"]) == records[row["name"]]["sha256"], row["name"]
    return "passes"


def _kill_at_random(args, seconds: float, rng, stratum: int = 0, strata: int = 1) -> float:
    """SIGKILL `edgeship ARGS` at a random point of stratum STRATUM of STRATA equal slices of SECONDS, so that a
    few kills still cover the whole run, from start-up to the last write."""
    process = _popen(*args)
    delay = max(0.2, float((stratum + rng.uniform()) * seconds / strata))
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.kill()  # SIGKILL: no handler, no cleanup
    process.communicate()
    return delay


@pytest.mark.slow
def test_sigkill_at_random_points_never_leaves_a_gate_that_lies(small_digits, tmp_path):
    run = tmp_path / "run"
    started = time.perf_counter()
    assert run_cli("train", small_digits, "--out", run, *TRAIN_ARGS).returncode == 0
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    assert run_cli("export", run, "--formats", EXPORT_FORMATS).returncode == 0
    export_seconds = time.perf_counter() - started
    assert assert_gate_honest(run) == "passes"

    outcomes = []
    for seed in range(KILL_SEEDS_EXPORT):
        _kill_at_random(("export", run, "--formats", EXPORT_FORMATS), export_seconds, np.random.default_rng(seed),
                        seed, KILL_SEEDS_EXPORT)
        outcomes.append(assert_gate_honest(run))
    rerun = run_cli("export", run, "--formats", EXPORT_FORMATS)
    assert rerun.returncode == 0, rerun.stderr
    assert assert_gate_honest(run) == "passes"
    assert run_cli("gate", run, *LOOSE).returncode == 0

    for seed in range(KILL_SEEDS_EXPORT, KILL_SEEDS_EXPORT + KILL_SEEDS_TRAIN):
        _kill_at_random(("train", small_digits, "--out", run, *TRAIN_ARGS, "--overwrite"), train_seconds,
                        np.random.default_rng(seed), seed - KILL_SEEDS_EXPORT, KILL_SEEDS_TRAIN)
        outcomes.append(assert_gate_honest(run))
    retrain = run_cli("train", small_digits, "--out", run, *TRAIN_ARGS, "--overwrite")
    assert retrain.returncode == 0, retrain.stderr
    assert run_cli("export", run, "--formats", EXPORT_FORMATS).returncode == 0
    assert assert_gate_honest(run) == "passes" and run_cli("gate", run, *LOOSE).returncode == 0
    print(f"kill outcomes: {outcomes}")
    assert "refused" in outcomes  # the kills did land mid-write
    assert not list(run.rglob(".*.tmp")) and not (run / ".edgeship-tmp").exists()


@pytest.mark.slow
def test_two_exports_on_one_run_exactly_one_proceeds(run_copy):
    first = _popen("export", run_copy, "--formats", "tflite,onnx")
    second = _popen("export", run_copy, "--formats", "tflite,onnx")
    results = {p.pid: (p.wait(timeout=300), p.communicate()[1]) for p in (first, second)}
    codes = sorted(code for code, _ in results.values())
    assert codes == [0, 2], results
    loser = next(pid for pid, (code, _) in results.items() if code == 2)
    winner = next(pid for pid in results if pid != loser)
    assert f"another edgeship export is running on this run (pid {winner})" in results[loser][1]
    assert assert_gate_honest(run_copy) == "passes"


def _mount_tmpfs(target: Path, size: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True).returncode == 0


def _megabytes(tree: Path) -> int:
    return sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) // 2 ** 20 + 1


def _fill(directory: Path) -> None:
    """Write until the disk is full (it may be full already: a tmpfs can refuse the new file itself)."""
    try:
        with open(directory / "filler", "wb") as handle:
            chunk = b"\0" * (1 << 16)
            while True:
                handle.write(chunk)
                handle.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC


def _artifact_digests(run: Path) -> dict:
    return {p.name: _sha256(p) for p in sorted((run / "bundle").iterdir()) if not p.name.startswith(".")}


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_the_previous_artifacts(exported_run, small_digits, tmp_path, monkeypatch,
                                                                   capsys):
    disk = tmp_path / "disk"
    if _mount_tmpfs(disk, f"{_megabytes(exported_run) + 32}m"):  # the run, and room that the filler then takes
        try:
            run = disk / "run"
            shutil.copytree(exported_run, run)
            before = _artifact_digests(run)
            _fill(disk)
            results = [run_cli("export", run, "--formats", "tflite,onnx"),
                       run_cli("train", small_digits, "--out", disk / "run2", *TRAIN_ARGS)]
            assert _artifact_digests(run) == before
            assert run_cli("gate", run, *LOOSE).returncode == 0
        finally:
            subprocess.run(["umount", str(disk)], capture_output=True)
        for result in results:
            assert result.returncode == 2, result.stderr
            errors = [line for line in result.stderr.splitlines() if line.startswith("edgeship: error:")]
            assert len(errors) == 1 and "no space left on device" in errors[0], result.stderr
            assert "Traceback" not in result.stderr
        return
    # No mount here: every atomic write fsyncs, so a failing fsync is a full disk on write.
    from edgeship.cli import main

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    before = _artifact_digests(run)

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    assert main(["export", str(run), "--formats", "tflite"]) == 2
    assert main(["train", str(small_digits), "--out", str(tmp_path / "run2"), *TRAIN_ARGS]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert err.count("edgeship: error:") == 2 and err.count("no space left on device") == 2
    assert _artifact_digests(run) == before


@pytest.mark.slow
def test_a_read_only_out_is_one_line_exit_2_everywhere(exported_run, small_digits, tmp_path, monkeypatch, capsys):
    from edgeship.core.splits import SplitManifest

    image = SplitManifest.read(exported_run / "bundle" / "splits.csv").select("test")[0].path
    disk = tmp_path / "ro"
    commands = lambda run, out: [  # noqa: E731 - one table for both ways of making the disk read-only
        ("train", str(small_digits), "--out", str(out / "run2"), *TRAIN_ARGS),
        ("export", str(run), "--formats", "tflite"),
        ("explain", str(exported_run), str(image), "--out", str(out / "explain")),
        ("gate", str(exported_run), *LOOSE, "--junit", str(out / "gate.xml")),
        ("bench", str(exported_run), "--runs", "2", "--warmup", "0", "--backend", "tflite", "--out", str(out / "b")),
    ]
    if _mount_tmpfs(disk, "64m"):
        try:
            run = disk / "run"
            shutil.copytree(exported_run, run)
            remounted = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True).returncode == 0
            results = [run_cli(*command) for command in commands(run, disk)] if remounted else []
            if remounted:
                print("read-only tmpfs")
                assert run_cli("gate", run, *LOOSE).returncode == 0  # the run itself is intact and still gates
        finally:
            subprocess.run(["umount", str(disk)], capture_output=True)
        if remounted:
            for command, result in zip(commands(run, disk), results):
                assert result.returncode == 2, (command, result.stderr)
                errors = [line for line in result.stderr.splitlines() if line.startswith("edgeship: error:")]
                assert len(errors) == 1 and "read-only file system" in errors[0], (command, result.stderr)
                assert "Traceback" not in result.stderr
            assert "tflite_int8" in results[-1].stdout and "measurements were kept in" in results[-1].stderr
            return
    from edgeship.cli import main

    run = tmp_path / "run"
    shutil.copytree(exported_run, run)

    def read_only(fd):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "fsync", read_only)
    codes = [main(list(command)) for command in commands(run, tmp_path / "out")]
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert codes == [2] * 5 and err.count("read-only file system") == 5
