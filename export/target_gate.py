"""The on-target gate: run every artifact on the device itself and hold its answers to the gate's thresholds.

`edgeship gate RUN --target ssh://pi@raspberrypi` ships the runtime, the artifacts and the test split's
image files (streamed as a tar, never all at once) to the board, where `runtime/remote_eval.py` decodes,
preprocesses and classifies them with the board's own libraries and kernels, and streams probabilities
back. Per target and artifact the report gets accuracy, Δ pp and top-1 agreement against the host's Keras
model, and agreement and max |Δp| against the same artifact on the host (cross-platform drift). The gate
never passes on host figures alone: a target that could not run, or ran other bytes, fails.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import tarfile
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from edgeship.core.integrity import load_verified_report
from edgeship.core.layout import RunLayout
from edgeship.core.pixels import iter_pixel_chunks
from edgeship.core.records import GateVerdict, Reference, TargetRow, TargetRun
from edgeship.core.report_store import update_report
from edgeship.core.splits import SplitManifest
from edgeship.targets.messages import MAX_LINE_BYTES, check_environment, check_shipped, parse_line
from edgeship.targets.ssh import (
    RemoteError,
    SSHOptions,
    SSHTarget,
    TargetMisbehaved,
    remote_python,
    remote_temp_dir,
    run_ssh,
    runtime_payload,
    shipped_names,
    ssh_command,
)
from edgeship.runtime.backends import BACKENDS
from edgeship.runtime.classifier import Classifier
from edgeship.runtime.errors import IntegrityError, UsageError
from edgeship.runtime.progress import progress_counter
from edgeship.runtime.spec import Bundle

from .formats import FORMATS
from .gate import GateThresholds, row_verdict
from .parity import compare_predictions

AGENT_MODULE = "edgeship.runtime.remote_eval"


def evaluate_on_targets(run: str | Path, targets: list[str], options: SSHOptions = SSHOptions(),
                        show_progress: bool = True) -> list[TargetRun]:
    """Every runtime artifact of RUN on each target; the records are merged into RUN's report. A target that
    fails gives a record with status 'failed' and its reason; the other targets still run."""
    parsed = [SSHTarget.parse(t) for t in targets]  # every URL checked before any work
    report, report_path = load_verified_report(run)  # the figures must describe these files
    layout = RunLayout.find(report_path.parent)
    probs_file = report.reference.probs_file
    if not probs_file:
        raise UsageError(f"{report_path}: no per-image Keras probabilities beside it (written by an older edgeship); "
                         f"re-run `edgeship export {layout.root}`")
    bundle = Bundle.load(layout.bundle)
    # a copy of another artifact (the C source of tflite_int8) is judged on the target as that one
    records = [r for r in bundle.artifacts if r.ok and r.backend in BACKENDS
               and (r.name not in FORMATS or FORMATS[r.name].on_device)]
    if not records:
        raise UsageError(f"{layout.bundle}: no artifact the device runtime runs (tflite, onnx); export some first")
    paths, labels = SplitManifest.read(layout.bundle / bundle.split_manifest).paths_and_indices("test", bundle.info.labels)
    reference = _reference_probs(layout.root, probs_file, len(paths), len(bundle.info.labels))
    host = _host_probabilities(layout, records, paths, bundle, show_progress)
    results, misbehaved = [], []
    for target in parsed:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            fingerprint, shipped, probs = _run_on_target(target, options, layout, records, paths,
                                                         len(bundle.info.labels), show_progress)
        except RemoteError as exc:
            results.append(TargetRun(f"ssh://{target.label}", "failed", error=str(exc), measured_at=started))
            if isinstance(exc, TargetMisbehaved):
                misbehaved.append(exc)
            continue
        rows = []
        for record in records:
            figures = compare_predictions(reference, probs[record.name], labels, bundle.info.labels)
            rows.append(TargetRow(
                name=record.name, sha256=shipped[record.name]["sha256"], expected_sha256=record.sha256,
                runtime=shipped[record.name].get("runtime"), n_test=int(len(labels)),
                **{k: figures[k] for k in ("accuracy", "accuracy_delta_pp", "accuracy_delta_ci95_pp", "mcnemar_p",
                                           "agreement", "max_abs_prob_diff", "per_class")},
                host_agreement=float(np.mean(probs[record.name].argmax(1) == host[record.name].argmax(1))),
                max_abs_prob_diff_vs_host=float(np.abs(probs[record.name].astype(np.float64)
                                                       - host[record.name]).max())))
        results.append(TargetRun(f"ssh://{target.label}", "ok", fingerprint=fingerprint, measured_at=started,
                                 artifacts=rows))
    _merge_into_report(layout, results)
    if misbehaved:  # recorded as failed (our words only); the command itself ends with exit 2 naming the target
        more = f" (and {len(misbehaved) - 1} more target(s))" if len(misbehaved) > 1 else ""
        raise TargetMisbehaved(f"{misbehaved[0]}{more}")
    return results


def _host_probabilities(layout, records, paths, bundle, show_progress: bool) -> dict[str, np.ndarray]:
    """Each artifact on this machine, on the same images: the other side of the cross-platform figures."""
    classifiers = {r.name: Classifier.load(layout.bundle, artifact=r.name) for r in records}
    parts = {name: [] for name in classifiers}
    for _, chunk in iter_pixel_chunks(paths, bundle.info.input, desc="host", show_progress=show_progress):
        for name, classifier in classifiers.items():
            parts[name].append(classifier.predict_proba(chunk))
    return {name: np.concatenate(p).astype(np.float64) for name, p in parts.items()}


def _payload(records, bundle_dir: Path, remote_dir: str) -> bytes:
    """The runtime, the artifacts under generated names and the list the agent reads."""
    names = shipped_names(bundle_dir / r.file for r in records)
    listed = [{"name": r.name, "path": f"{remote_dir}/{names[str(bundle_dir / r.file)]}"} for r in records]
    return runtime_payload({name: Path(local) for local, name in names.items()},
                           {"artifacts.json": json.dumps(listed).encode()})


def _run_on_target(target: SSHTarget, options: SSHOptions, layout: RunLayout, records, paths: list[Path],
                   n_classes: int, show_progress: bool):
    """(fingerprint, {artifact: {sha256, runtime}}, {artifact: (N, classes) probabilities}) from one target."""
    with remote_temp_dir(target, options, "edgeship-gate") as remote_dir:
        run_ssh(target, options, ["tar", "-x", "-f", "-", "-C", remote_dir],
                stdin=_payload(records, layout.bundle, remote_dir), timeout=600)
        python = remote_python(target, options, remote_dir)
        command = ssh_command(target, options, ["env", f"PYTHONPATH={remote_dir}", python, "-m", AGENT_MODULE,
                                                f"{remote_dir}/artifacts.json"])
        return _stream(command, target, paths, n_classes, [r.name for r in records], show_progress,
                       options.idle_timeout)


def _send_images(stdin, paths: list[Path], failure: list) -> None:
    try:
        with tarfile.open(fileobj=stdin, mode="w|") as tar:
            for i, path in enumerate(paths):
                tar.add(str(path), arcname=f"{i:08d}{Path(path).suffix.lower()}")
    except (BrokenPipeError, OSError) as exc:  # the agent stopped reading: its own error says why
        failure.append(exc)
    finally:
        try:
            stdin.close()
        except OSError:
            pass


def _stream(command, target: SSHTarget, paths, n_classes: int, names: list[str], show_progress: bool,
            idle_timeout: float = 300.0):
    """Send the images, read the agent's answers. Fails closed: every artifact must send finite probabilities
    for every test image, counted here, not taken from the agent's own `done`. The agent is not trusted: its
    lines are bounded in length and number, its header is checked (core/target_messages), and a silence longer
    than IDLE_TIMEOUT ends it; any of those is TargetMisbehaved (exit 2), and nothing it sent is kept."""
    received = _Received(names, len(paths), n_classes)
    header, done, error, failure, misbehaved = None, None, None, [], None
    most_lines = 4 * len(paths) + 1000  # a message per image and artifact at most, and some chatter
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        writer = threading.Thread(target=_send_images, args=(proc.stdin, paths, failure), daemon=True)
        writer.start()
        watchdog = _IdleWatchdog(proc, idle_timeout)
        bar = progress_counter(len(paths), desc=f"on {target.label}", enabled=show_progress, unit="img")
        try:
            for count in itertools.count(1):
                line = proc.stdout.readline(MAX_LINE_BYTES)
                if not line:
                    break
                watchdog.heard()
                if count > most_lines:
                    raise TargetMisbehaved(f"{target.label}: sent more than {most_lines} lines for {len(paths)} images")
                message = parse_line(line, target.label)
                if not isinstance(message, dict):
                    continue  # a library's chatter on stdout is not the protocol, nor is a bare number or list
                if "environment" in message:
                    header = {"environment": check_environment(message["environment"], target.label),
                              "artifacts": check_shipped(message.get("artifacts"), names, target.label)}
                elif "probs" in message:
                    bar.update(received.add(message))
                elif "done" in message:
                    done = message["done"]
                elif "error" in message:
                    error = str(message["error"])[:300]
        except (TargetMisbehaved, _ProtocolError) as exc:
            misbehaved = exc
            proc.kill()
        finally:
            watchdog.stop()
        proc.wait()
        writer.join(timeout=60)
        bar.close()
        stderr.seek(0)
        reason = stderr.read(1 << 16).decode("utf-8", "replace").strip().splitlines()
    if watchdog.fired:
        raise TargetMisbehaved(f"{target.label}: the agent sent nothing for {idle_timeout:g} s; the target was given up")
    if misbehaved is not None:
        raise TargetMisbehaved(str(misbehaved) if isinstance(misbehaved, TargetMisbehaved)
                               else f"{target.label}: {misbehaved}")
    if error or proc.returncode != 0 or header is None:
        why = error or (reason[-1][:300] if reason else f"the agent exited {proc.returncode}")
        raise RemoteError(f"{target.label}: the on-target evaluation failed: {why}")
    missing = received.problems(header)
    if missing or done != len(paths):
        why = missing[0] if missing else f"the agent reported {str(done)[:20]!r} images done of {len(paths)}"
        raise RemoteError(f"{target.label}: the on-target evaluation is incomplete: {why}")
    return header["environment"], header["artifacts"], received.probs


class _IdleWatchdog:
    """Kills PROC when it has said nothing for SECONDS (a board that hangs must not hang the gate)."""

    def __init__(self, proc, seconds: float):
        self.proc, self.seconds, self.fired = proc, seconds, False
        self._last, self._stopped = time.monotonic(), threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def heard(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(min(1.0, self.seconds / 4)):
            if time.monotonic() - self._last > self.seconds:
                self.fired = True
                self.proc.kill()
                return


class _ProtocolError(Exception):
    """A message from the agent that cannot be what it claims (wrong shape, rows out of range)."""


class _Received:
    """The probabilities each artifact sent, and which test images they cover."""

    def __init__(self, names: list[str], n_images: int, n_classes: int):
        self.n_images, self.n_classes = n_images, n_classes
        self.probs = {name: np.full((n_images, n_classes), np.nan, dtype=np.float32) for name in names}
        self.seen = {name: np.zeros(n_images, dtype=bool) for name in names}

    def add(self, message: dict) -> int:
        start, n, chunk = message.get("start"), message.get("n"), message.get("probs")
        if not (isinstance(start, int) and isinstance(n, int) and isinstance(chunk, dict)
                and 0 <= start and 0 < n and start + n <= self.n_images):
            raise _ProtocolError(f"a malformed probability message (start {start!r}, n {n!r})")
        for name, data in chunk.items():
            if name not in self.probs:
                raise _ProtocolError(f"probabilities for an artifact that was not sent ({str(name)[:40]!r})")
            try:
                values = np.frombuffer(base64.b64decode(data, validate=True), np.float32)
            except (TypeError, ValueError) as exc:
                raise _ProtocolError(f"undecodable probabilities for {name} ({exc})") from None
            if values.size != n * self.n_classes:
                raise _ProtocolError(f"{name}: {values.size} values for {n} images x {self.n_classes} classes")
            self.probs[name][start:start + n] = values.reshape(n, self.n_classes)
            self.seen[name][start:start + n] = True
        return n

    def problems(self, header: dict) -> list[str]:
        """Why the answers cannot be gated: an artifact without a record, rows never sent, values not finite."""
        shipped = header.get("artifacts") if isinstance(header.get("artifacts"), dict) else {}
        found = []
        for name, probs in self.probs.items():
            if not isinstance(shipped.get(name), dict) or not isinstance(shipped[name].get("sha256"), str):
                found.append(f"{name}: the agent did not say which file it ran")
            elif not self.seen[name].all():
                found.append(f"{name}: probabilities for {int(self.seen[name].sum())} of {self.n_images} test images")
            elif not np.isfinite(probs).all():
                found.append(f"{name}: {int((~np.isfinite(probs)).any(axis=1).sum())} test image(s) with "
                             f"non-finite probabilities")
        return found


def _merge_into_report(layout: RunLayout, results: list[TargetRun]) -> None:
    """Replace these targets' records in report.json (and report.md): the on-target gate's stage records."""
    def merge(report) -> None:
        measured = {a.name: a.sha256 for a in report.artifacts}
        if any(measured.get(row.name) != row.expected_sha256 for r in results for row in r.artifacts):
            raise IntegrityError(f"{layout.root} was re-exported while the target gate ran; run the gate again")
        fresh = {r.target for r in results}
        report.targets = [t for t in report.targets or [] if t.target not in fresh] + results

    update_report(layout, "gate", merge)


def target_verdicts(results: list[TargetRun], thresholds: GateThresholds, reference: Reference) -> list[GateVerdict]:
    """One verdict per (target, artifact), named 'TARGET ARTIFACT'; a failed target is one failing verdict."""
    verdicts = []
    for result in results:
        if not result.ok:
            verdicts.append(GateVerdict(result.target, False, [result.error or "failed"]))
            continue
        for row in result.artifacts:
            name = f"{result.target} {row.name}"
            if row.sha256 != row.expected_sha256:
                verdicts.append(GateVerdict(name, False, [f"the target ran other bytes (sha256 {str(row.sha256)[:12]}… "
                                                          f"instead of {str(row.expected_sha256)[:12]}…)"]))
                continue
            verdicts.append(row_verdict(row, thresholds, reference, name))
    return verdicts


def _reference_probs(root: Path, name: str, images: int, classes: int) -> np.ndarray:
    """Keras' probabilities per test image, as export saved them: a plain float array of (images, classes)
    beside the report. Anything else (an object array, another shape, a path out of the run) is one line."""
    from edgeship.runtime.spec import check_safe_name

    check_safe_name(name, "reference probabilities file", str(root / "report.json"))
    path = root / name
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"{path}: not the probabilities export saved ({str(exc)[:160]}); re-run "
                         f"`edgeship export {root}`") from None
    if array.dtype.kind != "f" or array.shape != (images, classes) or not np.all(np.isfinite(array)):
        raise UsageError(f"{path}: expected finite float probabilities of shape ({images}, {classes}), got "
                         f"{array.dtype} {array.shape}; re-run `edgeship export {root}`")
    return array
