"""When int8 really degrades: a model with an outlier channel fails the gate under plain int8, the report says
which layers and why, and `export --max-drop` finds artifacts that pass, choosing on the validation split only."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
from edgeship.core.records import ParityReport
from edgeship.runtime.fileio import sha256_file
from edgeship.export.exporter import budget_finer_than_one_image
from edgeship.export.outlier import outlier_run

FACTOR = 300.0
INT8 = ("tflite_int8", "onnx_int8")


@pytest.fixture(scope="module")
def well_trained_run(tmp_path_factory):
    """A small CNN that really learned its digits (the shared fixture's tiny one sits near 50 % on val, where
    a one-image flip is a 6-point swing): 5 classes x 120 images at 32 px."""
    from edgeship.train import SplitConfig, TrainConfig, train, write_digits_dataset

    data = write_digits_dataset(tmp_path_factory.mktemp("digits5") / "data", size=32, per_class=120, classes=5)
    out = tmp_path_factory.mktemp("trained5") / "run"
    train(data, out, TrainConfig(backbone="small_cnn", image_size=32, epochs=10, batch_size=32,
                                 splits=SplitConfig(seed=0), unknown_recall=None, show_progress=False))
    return out


@pytest.fixture(scope="module")
def outlier(well_trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("outlier") / "run"
    change = outlier_run(well_trained_run, out, FACTOR)
    return out, change


@pytest.fixture(scope="module")
def plain_export(outlier, tmp_path_factory):
    """The outlier run exported the ordinary way (no budget): what a user gets today."""
    from edgeship.export import export_run

    run = tmp_path_factory.mktemp("plain") / "run"
    shutil.copytree(outlier[0], run)
    export_run(run, ["tflite", "tflite_int8", "onnx", "onnx_int8"], show_progress=False)
    return run


def _rows(run):
    return {a["name"]: a for a in json.loads((run / "report.json").read_text())["artifacts"]}


def test_equalization_keeps_the_function_and_skips_what_clips():
    """Scales move across ReLU exactly (outputs equal to float rounding, the outlier's channel brought back in line
    with the others); a pair behind ReLU6 is skipped and named."""
    from edgeship.export.keras_graph import leaf_layers
    from edgeship.core.tfenv import import_keras
    from edgeship.export.equalize import equalized_copy

    _, keras = import_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="c0")(inputs)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(max_value=6.0, name="relu6")(x)
    x = keras.layers.Conv2D(4, 1, name="c2")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    bn0 = model.get_layer("bn0")
    gamma, beta, mean, var = bn0.get_weights()
    gamma[2], beta[2] = gamma[2] * 100, beta[2] * 100  # an outlier channel, scaled back in c1
    bn0.set_weights([gamma, beta, mean, var])
    kernel, bias = model.get_layer("c1").get_weights()
    kernel[:, :, 2, :] /= 100
    model.get_layer("c1").set_weights([kernel, bias])
    twin, done = equalized_copy(model)
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(twin.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    assert [p.split(" (")[0] for p in done.pairs] == ["bn0 → c1"]
    assert done.skipped == ["bn1 → c2: relu6 (ReLU) does not commute with a scale"]
    equalized = np.abs(next(layer for layer in leaf_layers(twin) if layer.name == "bn0").get_weights()[0])
    assert equalized.max() / np.median(equalized) < 10  # the ×100 channel is in line again
    assert np.abs(model.get_layer("bn0").get_weights()[0]).max() > 50 * np.median(np.abs(gamma))  # original untouched


def test_a_residual_branch_is_no_equalization_pair_and_the_residual_outlier_keeps_the_function():
    """MobileNetV2's block_1_project_BN feeds block_2_expand and, through the skip connection, block_2_add: a scale
    moved into block_2_expand alone would change the sum, so the pair is refused and named. The residual outlier
    scales both summed BatchNorms and every convolution reading the channel, and the float model stays the same."""
    from edgeship.core.tfenv import import_keras
    from edgeship.export.equalize import equalized_copy
    from edgeship.export.keras_graph import scale_pairs
    from edgeship.export.outlier import add_residual_outlier

    _, keras = import_keras()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, include_top=False,
                                           pooling="avg")
    pairs = {p.batchnorm.name: p for p in scale_pairs(model)}
    assert pairs["block_1_project_BN"].blocked_by == "block_2_add (Add, also reads block_1_project_BN)"
    twin, done = equalized_copy(model)
    assert not any(p.startswith("block_1_project_BN") for p in done.pairs)  # linear bottlenecks without a skip may
    assert any(s.startswith("block_1_project_BN → block_2_expand: block_2_add") for s in done.skipped)
    x = np.random.default_rng(0).uniform(-1, 1, size=(4, 32, 32, 3)).astype(np.float32)
    before = model.predict(x, verbose=0)
    change = add_residual_outlier(model, 30.0)
    assert (change.batchnorm, change.conv) == ("block_1_project_BN + block_2_project_BN",
                                               "block_2_expand and block_3_expand")
    np.testing.assert_allclose(model.predict(x, verbose=0), before, rtol=1e-3, atol=1e-4)
    gamma = np.abs(model.get_layer("block_2_project_BN").get_weights()[0])
    assert gamma[0] > 10 * np.median(gamma)  # the channel's range is 30x wider in the sum int8 sees


def test_outlier_channel_leaves_the_float_model_unchanged(well_trained_run, outlier):
    from edgeship.core.pixels import load_pixels
    from edgeship.core.splits import SplitManifest
    from edgeship.core.tensorflow import load_keras_model
    from edgeship.runtime import Bundle

    bundle = Bundle.load(well_trained_run / "bundle")
    paths, _ = SplitManifest.read(well_trained_run / "bundle" / "splits.csv").paths_and_indices("test", bundle.info.labels)
    images = load_pixels(paths[:16], bundle.info.input, show_progress=False).astype(np.float32)
    before = load_keras_model(well_trained_run / "bundle" / "model.keras").predict(images, verbose=0)
    after = load_keras_model(outlier[0] / "bundle" / "model.keras").predict(images, verbose=0)
    assert np.abs(before - after).max() < 1e-4
    assert outlier[1].factor == FACTOR and "float model unchanged" in Bundle.load(outlier[0] / "bundle").provenance["modified"]


def test_plain_int8_fails_the_gate_and_the_report_names_the_layer(plain_export, cli):
    rows = _rows(plain_export)
    for name in INT8:
        assert rows[name]["accuracy_delta_pp"] < -1.0, (name, rows[name]["accuracy_delta_pp"])
        layers = rows[name]["layers"]  # diagnosed because the int8 artifact broke the default budget on val
        assert layers, name
        assert any((layer["hint"] or "").startswith("outlier channel") for layer in layers[:3]), layers[:3]
    assert rows["tflite_int8"]["layers"][0]["metric"] == "rmse/scale"
    assert rows["onnx_int8"]["layers"][0]["metric"] == "sqnr_db"
    assert "layers" not in rows["tflite"] and "quantization" not in rows["tflite_int8"]
    gate = cli("gate", plain_export, "--max-drop", "1")
    assert gate.returncode == 1
    assert "FAIL tflite_int8" in gate.stdout and "FAIL onnx_int8" in gate.stdout
    markdown = (plain_export / "report.md").read_text()
    assert "## Quantization" in markdown and "report_layers.png" in markdown and (plain_export / "report_layers.png").is_file()


def _activations(model_path, outputs, images):
    """Tensors OUTPUTS of an ONNX model over IMAGES, by adding them as graph outputs (plain onnxruntime)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    for name in outputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    runs = [session.run(outputs, {feed: image[None].astype(np.float32)}) for image in images]
    return {name: np.concatenate([run[i].ravel() for run in runs]) for i, name in enumerate(outputs)}


def test_onnx_layer_error_matches_an_independent_computation(outlier, plain_export, tmp_path):
    """The worst convolution's figure (it reads a pooled activation), recomputed with plain onnxruntime and numpy from the same images."""
    from edgeship.core.pixels import load_pixels
    from edgeship.core.splits import SplitManifest, stratified_indices
    from edgeship.export.exporter import ConversionJob, _open_run
    from edgeship.export.onnx_convert import prepared_float_model
    from edgeship.export.quant_diagnosis import onnx_graph
    from edgeship.export.quant_search import DIAGNOSIS_IMAGES
    from edgeship.runtime import Bundle

    layers = _rows(plain_export)["onnx_int8"]["layers"]
    top = next(layer for layer in layers if layer["op"] == "Conv+Relu" and "pool" in layer["keep_float"][2].lower())
    bundle = Bundle.load(plain_export / "bundle")
    paths, labels = SplitManifest.read(plain_export / "bundle" / "splits.csv").paths_and_indices("val", bundle.info.labels)
    chosen = [paths[i] for i in stratified_indices(labels, DIAGNOSIS_IMAGES)]  # what the diagnosis reads
    images = load_pixels(chosen, bundle.info.input, show_progress=False)
    _, _, model, _ = _open_run(plain_export)
    prepared = prepared_float_model(ConversionJob(model, bundle.info, None), tmp_path)
    graph = onnx_graph(prepared)
    node = graph.producer[top["name"]]
    conv = graph.producer[node.inputs[0]]  # Relu <- Conv <- the measured input (the pool's output)
    source = conv.inputs[0]
    float_acts = _activations(prepared, [top["name"], source], images)
    qdq_acts = _activations(plain_export / "bundle" / "model_int8.onnx",
                            [f"{top['name']}_DequantizeLinear_Output", f"{source}_DequantizeLinear_Output"], images)

    def noise(name):
        f, q = float_acts[name], qdq_acts[f"{name}_DequantizeLinear_Output"]
        return float(np.sum((f - q).astype(np.float64) ** 2) / np.sum(f.astype(np.float64) ** 2))

    expected = -10.0 * math.log10(noise(top["name"]) - noise(source))
    assert top["error"] == pytest.approx(expected, abs=0.05)


def _poison_test_split(run):
    """Rotate every test image's label to another class and replace every test image with noise (new files,
    inside RUN, so the honest copy keeps its own); re-record the manifest's sha256, as a re-split would."""
    from PIL import Image

    from edgeship.runtime import Bundle

    bundle = Bundle.load(run / "bundle")
    labels = list(bundle.info.labels)
    path = run / "bundle" / "splits.csv"
    rows = list(csv.reader(path.read_text().splitlines()))
    noise = run / "noise"
    noise.mkdir()
    rng = np.random.default_rng(7)
    for i, row in enumerate(rows[1:]):
        if row[2] == "test":
            row[1] = labels[(labels.index(row[1]) + 1) % len(labels)]
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(noise / f"{i}.png")
            row[0] = f"../noise/{i}.png"
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    bundle.provenance["split"]["sha256"] = sha256_file(path)
    bundle.save(run / "bundle")


def _graph_digest(path) -> str:
    """sha256 of an artifact without its embedded metadata (which names the split manifest's sha256, and so
    differs between two copies that differ only in their test split): the model the search chose, byte for byte."""
    import hashlib

    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))
        del model.metadata_props[:]
        return hashlib.sha256(model.SerializeToString()).hexdigest()
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(path.read_bytes()))  # the packed zip is dropped
    kept = [m for m in model.metadata or [] if m.name.decode() not in ("edgeship", "TFLITE_METADATA")]
    dropped = {m.buffer for m in model.metadata or []} - {m.buffer for m in kept}
    for index in dropped:
        model.buffers[index].data = None
    model.metadata = kept
    return hashlib.sha256(bytes(flatbuffer_utils.convert_object_to_bytearray(model))).hexdigest()


# Each export in a fresh process, as `edgeship export` runs (tf2onnx numbers nodes per process), with trial
# timings that never depend on this machine: every candidate takes 0.1 ms, so ties (then the fewest float
# nodes) decide, the same way in both exports.
STEADY_EXPORT = """
import sys
import numpy as np
import edgeship.export.quant_search as search
search.session_times = lambda session, x, warmup=10, runs=100, min_seconds=0.0: np.full(runs, 0.1)
from edgeship.export import export_run
export_run(sys.argv[1], ["tflite", "tflite_int8", "onnx", "onnx_int8"], max_drop=0.5, show_progress=False)
"""


@pytest.mark.slow
def test_max_drop_search_passes_the_gate_and_never_reads_the_test_split(outlier, tmp_path, cli):
    import subprocess
    import sys

    honest, poisoned = tmp_path / "honest", tmp_path / "poisoned"
    shutil.copytree(outlier[0], honest)
    shutil.copytree(outlier[0], poisoned)
    _poison_test_split(poisoned)
    for run in (honest, poisoned):
        done = subprocess.run([sys.executable, "-c", STEADY_EXPORT, str(run)], capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    rows, poisoned_rows = _rows(honest), _rows(poisoned)
    # The search holds 0.5 pp on val; on 120 test images the same recipe may lose an image or two (1.67 pp
    # here), against the ~13 pp plain int8 loses on this model.
    gate = cli("gate", honest, "--max-drop", "2")
    assert gate.returncode == 0, gate.stdout
    for name in INT8:
        q = rows[name]["quantization"]
        assert q["met_budget"] and q["split"] == "val" and q["trials"][0]["label"] == "plain"
        assert not q["trials"][0]["meets_budget"]
        passing = [t for t in q["trials"] if t["meets_budget"]]
        chosen = q["trials"][q["chosen_trial"]]
        assert chosen["label"] == q["chosen"] and chosen["meets_budget"]
        assert chosen["p50_ms"] <= 1.1 * min(t["p50_ms"] for t in passing)  # the fastest within budget (10 % ties)
        fewest = min(len(t["float_layers"]) for t in passing)
        assert len(chosen["float_layers"]) == fewest  # all tie on time here: the fewest float nodes win
        # cross-layer equalization, tried before any layer is left in float, undoes the outlier channel: int8
        # keeps every layer (and its speed)
        assert q["trials"][1]["label"] == "equalized (CLE)" and q["trials"][1]["meets_budget"]
        assert chosen["float_layers"] == [] and chosen["label"] == "equalized (CLE)"
        assert any(pair.startswith(f"{outlier[1].batchnorm} → {outlier[1].conv} ") for pair in q["equalized_pairs"])
        assert rows[name]["accuracy_delta_pp"] >= -2.0
        # the poisoned test split changed the test figures, and nothing the search chose or measured
        assert poisoned_rows[name]["accuracy"] != rows[name]["accuracy"]
        twin = poisoned_rows[name]["quantization"]
        assert (twin["chosen"], twin["calibration"], twin["float_layers"]) == (q["chosen"], q["calibration"],
                                                                               q["float_layers"])
        assert [t["val_accuracy"] for t in twin["trials"]] == [t["val_accuracy"] for t in q["trials"]]
        artifact = rows[name]["path"]
        assert _graph_digest(honest / artifact) == _graph_digest(poisoned / artifact), name
    assert "## Quantization" in (honest / "report.md").read_text()
    # 0.5 pp is finer than one of the 60 validation images (1.67 pp): the report says so, and how to fix it
    n_val = rows["tflite_int8"]["quantization"]["n_images"]
    warnings = json.loads((honest / "report.json").read_text())["warnings"]
    assert 100 / n_val > 0.5 and budget_finer_than_one_image(0.5, "val", n_val) in warnings


def test_a_budget_finer_than_one_validation_image_is_named_with_the_fix():
    said = budget_finer_than_one_image(0.5, "val", 179)
    assert "0.56 pp" in said and "179 val images" in said and "--val-fraction" in said
    assert "at least 200 val images" in said and "at least 0.56" in said  # 200 images: one is 0.5 pp
    assert "at least 334 val images" in budget_finer_than_one_image(0.3, "val", 179)
    past_the_cap = budget_finer_than_one_image(0.1, "val", 500)  # 1,000 images would do, but checks hold 500
    assert "--val-fraction" not in past_the_cap and "at least 0.20" in past_the_cap and "500" in past_the_cap
    assert budget_finer_than_one_image(0.56, "val", 179) is None  # one image fits: nothing to say
    assert budget_finer_than_one_image(0.5, "val", 200) is None
    assert budget_finer_than_one_image(None, "val", 179) is None  # no --max-drop


def test_speedup_figures_and_the_min_speedup_gate(exported_run, cli):
    from edgeship.export.gate import GateThresholds, evaluate_gate
    from edgeship.export.gate_checks import SPEED_PRECISIONS
    from edgeship.runtime.errors import UsageError

    rows = _rows(exported_run)
    for name, row in rows.items():
        if row.get("format") in ("tflite", "onnx", "ort") and row.get("precision") != "float32":
            sibling = rows[row["speedup"]["over"]]
            assert sibling["format"] == row["format"] and sibling["precision"] == "float32"
            assert row["speedup"]["value"] == pytest.approx(sibling["latency_ms"]["p50"] / row["latency_ms"]["p50"],
                                                            rel=1e-3)
        else:
            assert "speedup" not in row, name
    gated = [r for r in rows.values() if r.get("speedup") and r["precision"] in SPEED_PRECISIONS]
    slowest = min(r["speedup"]["value"] for r in gated)
    strict = cli("gate", exported_run, "--max-drop", "100", "--min-agreement", "0", "--min-speedup", str(slowest * 1.01))
    assert strict.returncode == 1 and ("× faster than" in strict.stdout or "× slower than" in strict.stdout)
    loose = cli("gate", exported_run, "--max-drop", "100", "--min-agreement", "0", "--min-speedup", str(slowest * 0.99))
    assert loose.returncode == 0, loose.stdout
    row = dict(name="q", status="ok", format="onnx", precision="int8", accuracy=0.9, accuracy_delta_pp=0.0, agreement=1.0)
    verdict = evaluate_gate(ParityReport.from_json({"artifacts": [row]}), GateThresholds(min_speedup=1.5))[0]
    assert not verdict.passed and "no speed-up figure" in verdict.reasons[0]  # fails closed
    with pytest.raises(UsageError):
        GateThresholds(min_speedup=0)


def test_min_speedup_judges_quantization_not_float16_and_says_slower_plainly():
    from edgeship.export.gate import GateThresholds, evaluate_gate

    def row(precision, value):
        return dict(name=precision, status="ok", format="tflite", precision=precision, accuracy=0.9,
                    accuracy_delta_pp=0.0, agreement=1.0, speedup={"over": "tflite", "value": value, "threads": 1,
                                                                   "source": "bench"})

    fp16, int8 = evaluate_gate(ParityReport.from_json({"artifacts": [row("float16", 1.01), row("int8", 0.14)]}), GateThresholds(min_speedup=1.5))
    assert fp16.passed  # a size format: not held to a speed-up
    assert not int8.passed and int8.reasons[0].startswith("7.1× slower than tflite here (wanted 1.5× faster")


def test_diagnose_on_request_ranks_every_int8_layer(run_copy, cli):
    done = cli("export", run_copy, "--formats", "tflite_int8,onnx_int8", "--diagnose")
    assert done.returncode == 0, done.stderr
    rows = _rows(run_copy)
    for name in INT8:
        layers = rows[name]["layers"]
        assert len(layers) >= 5 and all(layer["keep_float"] for layer in layers)
        badness = [layer["error"] if layer["metric"] == "rmse/scale" else -(layer["error"] or math.inf) for layer in layers]
        assert badness == sorted(badness, reverse=True)
        assert "quantization" not in rows[name]  # no --max-drop: nothing searched


def test_outlier_command_refuses_bad_requests_in_one_line(outlier, tmp_path, cli):
    run = outlier[0]
    unknown = cli("outlier", run, "--out", tmp_path / "x", "--batchnorm", "nope")
    assert unknown.returncode == 2 and "no BatchNormalization named 'nope'" in unknown.stderr and "bn0" in unknown.stderr
    taken = cli("outlier", run, "--out", run)
    assert taken.returncode == 2 and "already exists" in taken.stderr and "Traceback" not in taken.stderr
    made = cli("outlier", run, "--out", tmp_path / "y", "--batchnorm", "bn2", "--factor", "50", "--channel", "3")
    assert made.returncode == 0 and "channel 3 of bn2 scaled ×50, conv3's weights" in made.stdout
    residual = cli("outlier", run, "--out", tmp_path / "z", "--residual")  # small_cnn has no residual Add
    assert residual.returncode == 2 and "--residual needs a MobileNetV2-style network" in residual.stderr
    assert "Traceback" not in residual.stderr and not (tmp_path / "z").exists()


@pytest.mark.slow
def test_the_int8_search_gives_the_same_bytes_with_the_test_split_poisoned(tmp_path):
    """The x100 outlier model searched twice under --max-drop: once with its test images, once with them replaced
    by noise. The search reads val and calib only, and nothing in an artifact depends on when it was converted,
    so both exports give byte-identical tflite_int8 and onnx_int8 files."""
    import csv
    import shutil

    import numpy as np
    from PIL import Image

    from edgeship.export import export_run
    from edgeship.train import SplitConfig, TrainConfig, train, write_digits_dataset
    from edgeship.export.outlier import outlier_run

    clean = tmp_path / "clean"
    data = write_digits_dataset(clean / "data", size=32, per_class=30, classes=4)
    train(data, clean / "base", TrainConfig(backbone="small_cnn", image_size=32, epochs=4, batch_size=16,
                                            splits=SplitConfig(seed=0), unknown_recall=None, show_progress=False))
    outlier_run(clean / "base", clean / "run", factor=100.0)
    poisoned = tmp_path / "poisoned"
    shutil.copytree(clean, poisoned)
    rows = list(csv.DictReader(open(poisoned / "run" / "bundle" / "splits.csv")))
    noise = np.random.default_rng(0)
    for row in (r for r in rows if r["split"] == "test"):
        path = (poisoned / "run" / "bundle" / row["path"]).resolve()
        assert poisoned in path.parents
        Image.fromarray(noise.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    files = {}
    for name, root in (("clean", clean), ("poisoned", poisoned)):
        export_run(root / "run", ["tflite_int8", "onnx_int8"], max_drop=0.5, show_progress=False)
        files[name] = {f: (root / "run" / "bundle" / f).read_bytes() for f in ("model_int8.tflite", "model_int8.onnx")}
    assert files["clean"] == files["poisoned"]
