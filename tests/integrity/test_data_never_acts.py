"""A bundle, a report or a model file from someone else is data: loading it never runs its code, never writes
outside the run, never follows a link or a FIFO out of the bundle, and what is hashed is what gets loaded.

Each attack here is the real thing (a SavedModel whose graph writes a file, an artifact name that climbs out of
the run, a lock that is a link to the user's notes, an artifact that is /dev/zero or a FIFO), with every sha256
recomputed by its author so that the integrity checks alone would let it through.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from ..cli_checks import one_line_exit_2
from ..export.test_explore import _free_port
from ..export.test_explore import _url as _printed_url

pytestmark = pytest.mark.slow


def _resign(run, name: str) -> None:
    """Recompute the sha256 and size of artifact NAME in RUN's edgeship.json, as a hostile author would."""
    from edgeship.runtime import Bundle
    from edgeship.runtime.fileio import tree_digest

    bundle = Bundle.load(run / "bundle")
    record = bundle.artifact(name)
    path = run / "bundle" / record.file
    if path.is_dir():
        record.size_bytes, record.sha256 = tree_digest(path)
    else:
        data = path.read_bytes()
        record.size_bytes, record.sha256 = len(data), hashlib.sha256(data).hexdigest()
    bundle.save(run / "bundle")


@pytest.fixture()
def hostile_saved_model(run_copy, tmp_path):
    """RUN's saved_model replaced by one whose serving signature writes MARKER each time it runs."""
    from edgeship.core.tfenv import import_keras

    tf, _ = import_keras()
    marker = tmp_path / "WRITTEN_BY_THE_GRAPH"

    class Writes(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        def __call__(self, images):
            tf.io.write_file(str(marker), "the graph ran")
            return {"output_0": tf.nn.softmax(tf.reduce_mean(images, axis=[1, 2])[:, :1] * tf.ones([1, 4]))}

    module = Writes()
    target = run_copy / "bundle" / "saved_model"
    shutil.rmtree(target)
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.__call__})
    assert not marker.exists()
    _resign(run_copy, "saved_model")
    return run_copy, marker


def test_a_savedmodel_from_elsewhere_never_runs_its_graph_without_trust_code(hostile_saved_model, tmp_path, cli):
    from edgeship.core.splits import SplitManifest
    from edgeship.runtime import Bundle

    run, marker = hostile_saved_model
    hostile_digest = Bundle.load(run / "bundle").artifact("saved_model").sha256
    one_line_exit_2(cli("bench", run, "--backend", "tensorflow", "--runs", "2", "--warmup", "0"), "--trust-code")
    assert not marker.exists()
    plain = cli("bench", run, "--runs", "2", "--warmup", "0", "--json", tmp_path / "b.json")
    assert plain.returncode == 0, plain.stderr
    row = next(r for r in json.loads((tmp_path / "b.json").read_text())["rows"] if r["name"] == "saved_model")
    assert row["status"] == "unavailable" and "--trust-code" in row["error"] and not marker.exists()

    holdout = tmp_path / "holdout"
    for item in SplitManifest.read(run / "bundle" / "splits.csv").select("test")[:8]:
        (holdout / item.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(item.path, holdout / item.label / item.path.name)
    one_line_exit_2(cli("gate", "--reference", run / "bundle" / "saved_model", "--candidate",
                         run / "bundle" / "model_float32.tflite", "--data", holdout), "--trust-code")
    assert not marker.exists()

    # export measures a SavedModel it made itself: the hostile one is converted again from model.keras
    exported = cli("export", run, "--formats", "tflite")
    assert exported.returncode == 0, exported.stderr
    assert not marker.exists()
    remade = Bundle.load(run / "bundle").artifact("saved_model")
    assert remade.sha256 != hostile_digest
    report = {a["name"]: a for a in json.loads((run / "report.json").read_text())["artifacts"]}
    assert report["saved_model"]["agreement"] == 1.0  # the re-made graph is the Keras model's


def test_trust_code_is_the_one_way_to_time_a_savedmodel(hostile_saved_model, cli):
    run, marker = hostile_saved_model
    trusted = cli("bench", run, "--backend", "tensorflow", "--runs", "2", "--warmup", "0", "--trust-code")
    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists()  # the flag works: the graph ran because the user said so


def test_a_space_file_with_a_hub_backbone_needs_trust_code(tmp_path, small_digits, cli):
    from edgeship.core.errors import UntrustedCodeError
    from edgeship.sweep import load_space

    space = tmp_path / "space.toml"
    space.write_text('precisions = ["int8"]\n[[backbones]]\nname = "hub:https://example.invalid/model"\n')
    with pytest.raises(UntrustedCodeError, match="--trust-code"):
        load_space(space)
    one_line_exit_2(cli("sweep", small_digits, "--out", tmp_path / "sweep", "--space", space), "--trust-code")
    assert not (tmp_path / "sweep" / "trials").exists()


def test_an_artifact_name_that_climbs_out_of_the_run_is_refused(run_copy, tmp_path, cli):
    manifest = run_copy / "bundle" / "edgeship.json"
    data = json.loads(manifest.read_text())
    escape = tmp_path / "outside"
    record = next(a for a in data["artifacts"] if a["name"] == "tflite_int8")
    record["name"] = os.path.relpath(escape, run_copy / "explore")
    manifest.write_text(json.dumps(data))
    one_line_exit_2(cli("explore", run_copy, "--write-only"), "not a plain name")
    assert not escape.exists()
    record["name"], record["file"] = "tflite_int8", "../../etc/hostname"
    manifest.write_text(json.dumps(data))
    one_line_exit_2(cli("gate", run_copy), "not a plain name")


def test_a_lock_that_links_to_a_users_file_is_refused_and_the_file_kept(run_copy, tmp_path, cli):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    lock = run_copy / ".edgeship.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(notes)
    one_line_exit_2(cli("bench", run_copy, "--runs", "2", "--warmup", "0", "--backend", "tflite"), "lock")
    assert notes.read_text() == "my notes\n"
    lock.unlink()
    os.link(notes, lock)  # a hard link is the same file under another name
    one_line_exit_2(cli("bench", run_copy, "--runs", "2", "--warmup", "0", "--backend", "tflite"), "lock")
    assert notes.read_text() == "my notes\n"
    lock.unlink()
    lock.write_text("somebody's own file\n")
    one_line_exit_2(cli("bench", run_copy, "--runs", "2", "--warmup", "0", "--backend", "tflite"), "lock")
    assert lock.read_text() == "somebody's own file\n"


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "link_out"])
def test_an_artifact_that_is_not_a_regular_file_in_the_bundle_fails_at_once(run_copy, tmp_path, kind, cli):
    artifact = run_copy / "bundle" / "model_int8.tflite"
    original = tmp_path / "elsewhere.tflite"
    shutil.move(artifact, original)
    if kind == "dev_zero":
        artifact.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(artifact)
    else:  # the right bytes, but outside the bundle: a link could point anywhere next time
        artifact.symlink_to(original)
    image = next(run_copy.parent.rglob("*.png"), None) or _digit_png(tmp_path)
    started = time.monotonic()
    one_line_exit_2(cli("predict", run_copy, image, "--artifact", "tflite_int8", timeout=120))
    one_line_exit_2(cli("gate", run_copy, timeout=120))
    assert time.monotonic() - started < 110


def _digit_png(tmp_path):
    import numpy as np
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    return path


def test_the_bytes_hashed_are_the_bytes_loaded(run_copy, monkeypatch):
    """An artifact swapped on disk right after its hash was taken: the session still holds the checked bytes."""
    from edgeship.runtime import Bundle, Classifier, spec

    path = run_copy / "bundle" / "model_int8.tflite"
    checked = path.read_bytes()
    other = (run_copy / "bundle" / "model_float32.tflite").read_bytes()
    real = spec.sha256_bytes

    def hash_then_swap(data):
        digest = real(data)
        if data == checked:
            path.write_bytes(other)  # the swap, between the check and any second open
        return digest

    monkeypatch.setattr(spec, "sha256_bytes", hash_then_swap)
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    classifier = Classifier.load(run_copy, artifact="tflite_int8")
    assert classifier.model_bytes == checked and path.read_bytes() == other
    assert opened.count(str(path)) == 1  # read once
    timing = classifier.timing_session(1)  # bench's own session at another thread count: the same bytes
    assert timing.model_bytes == checked
    assert Bundle.load(run_copy / "bundle").artifact("tflite_int8").sha256 == real(checked)


def test_the_explorer_answers_only_its_own_page_and_model(exported_run, tmp_path):
    pytest.importorskip("model_explorer")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "edgeship", "explore", str(exported_run), "--no-browser",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = _printed_url(server)
        token = url.split("token=", 1)[1].split("&", 1)[0]
        base = f"http://127.0.0.1:{port}"
        status, _ = _get(f"{base}/?token={token}", wait=True)
        assert status == 200
        secret = tmp_path / "secret.txt"
        secret.write_text("private")
        status, body = _get(f"{base}/api/v1/read_text_file?token={token}&path={secret}")
        assert status == 403 and "private" not in body
        status, body = _get(f"{base}/?token={token}", host=f"attacker.example:{port}")  # DNS rebinding
        assert status == 403
        status, body = _get(f"{base}/check_health")  # no token, no cookie
        assert status == 403
        status, body = _get(f"{base}/check_health?token={'x' * len(token)}")
        assert status == 403
        command = json.dumps({"extensionId": "tflite_adapter", "cmdId": "convert", "modelPath": str(secret),
                              "settings": {}})
        from urllib.parse import quote

        status, body = _get(f"{base}/api/v1/send_command?token={token}&json={quote(command)}")
        assert status == 403 and "private" not in body
        status, body = _get(f"{base}/check_health?token={token}")
        assert status == 200 and body == "model_explorer_ok"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_non_loopback_host_needs_allow_remote(exported_run, cli):
    one_line_exit_2(cli("explore", exported_run, "--host", "0.0.0.0", "--no-browser"), "--allow-remote")


def _get(url: str, host: str | None = None, wait: bool = False) -> tuple[int, str]:
    deadline = time.time() + (120 if wait else 10)
    while True:
        request = urllib.request.Request(url, headers={"Host": host} if host else {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")
        except (urllib.error.URLError, ConnectionError):
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def test_onnx_external_data_is_refused_before_anything_reads_it(tmp_path):
    """An initializer whose external data is `creds.bin`: given as bytes, ONNX Runtime would resolve it against
    the current directory and turn the file's bytes into weights (and scores)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    home = tmp_path / "home"
    home.mkdir()
    (home / "creds.bin").write_bytes(b"aws_secret_access_key=0123456789abcdef" * 1300)
    weights = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[3072, 4])
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "creds.bin"), ("offset", "0"), ("length", str(3072 * 4 * 4))):
        weights.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 32, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weights, helper.make_tensor("shape", TensorProto.INT64, [2], [1, 3072])])
    model_path = tmp_path / "model.onnx"
    model_path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    image = _digit_png(tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")
    done = subprocess.run([sys.executable, "-m", "edgeship", "predict", str(model_path), str(image), "--labels",
                           str(labels), "--json"], capture_output=True, text=True, cwd=home, timeout=300)
    one_line_exit_2(done, "outside the file", "creds.bin")
    assert "aws_secret" not in done.stdout + done.stderr
    from edgeship.runtime.backends import onnx_external_data

    plain = onnx.helper.make_model(onnx.helper.make_graph(graph.node, "g", graph.input, graph.output, [
        helper.make_tensor("w", TensorProto.FLOAT, [3072, 4], np.zeros(3072 * 4, np.float32)),
        helper.make_tensor("shape", TensorProto.INT64, [2], [1, 3072])]))
    assert onnx_external_data(plain.SerializeToString()) is None  # a self-contained model loads as before


def test_remeasure_fails_a_report_whose_author_rewrote_the_figures(run_copy, tmp_path, cli):
    """`model_int8.tflite` replaced by 26 bytes of text, its sha256 written into edgeship.json and report.json:
    `gate RUN` passes (hashes bind figures to files), `gate RUN --remeasure` measures and fails."""
    sound = tmp_path / "sound"
    shutil.copytree(run_copy, sound)
    # the shared run holds a SavedModel too: our own, so --trust-code (without it: exit 2, tested above)
    checked = cli("gate", sound, "--remeasure", "--trust-code")
    assert checked.returncode == 0 and "the report's figures hold" in checked.stdout, checked.stdout + checked.stderr

    fake = b"this is not a tflite model"
    (run_copy / "bundle" / "model_int8.tflite").write_bytes(fake)
    _resign(run_copy, "tflite_int8")
    report_path = run_copy / "report.json"
    report = json.loads(report_path.read_text())
    for row in report["artifacts"]:
        if row["name"] == "tflite_int8":
            row["sha256"], row["size_bytes"] = hashlib.sha256(fake).hexdigest(), len(fake)
    report_path.write_text(json.dumps(report))
    assert cli("gate", run_copy).returncode == 0  # what the hashes alone allow
    caught = cli("gate", run_copy, "--remeasure", "--trust-code")
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "REMEASURED tflite_int8" in caught.stderr and "gate FAILED" in caught.stdout

    # figures rewritten for a real artifact: the onnx row claims what its file does not do
    report = json.loads((sound / "report.json").read_text())
    for row in report["artifacts"]:
        if row["name"] == "onnx":
            row["agreement"], row["max_abs_prob_diff"] = 1.0, 0.5
    (sound / "report.json").write_text(json.dumps(report))
    caught = cli("gate", sound, "--remeasure", "--trust-code")
    assert caught.returncode == 1 and "REMEASURED onnx: max_abs_prob_diff recorded 0.5" in caught.stderr, caught.stderr
