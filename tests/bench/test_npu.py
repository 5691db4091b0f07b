"""Arm Ethos-U through Vela: `bench --npu` records, per int8 .tflite and configuration, which operators the NPU
takes (and Vela's reason for each it does not), cycles, memory and the estimated time; `gate --require-npu` fails an
artifact with any operator left on the CPU, naming it and Vela's reason. Estimates never enter the bench rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("ethosu.vela", reason="ethos-u-vela is not installed (pip install 'edgeship[mcu]')")


@pytest.fixture(scope="module")
def reversed_rows(tmp_path_factory):
    """An int8 model with REVERSE_V2 along the height axis: Vela's supported-operator list has no such reverse
    for Ethos-U55, so it stays on the CPU."""
    import tensorflow as tf
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Lambda(lambda t: tf.reverse(t, axis=[1]))(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    path = tmp_path_factory.mktemp("npu") / "reversed.tflite"
    path.write_bytes(converter.convert())
    return path


def test_the_demo_model_maps_wholly_and_its_estimates_add_up(run_copy, capsys):
    from edgeship.cli import main

    assert main(["bench", str(run_copy), "--backend", "tflite", "--runs", "2", "--warmup", "0",
                 "--npu", "ethos-u55-128", "--npu", "ethos-u65-256"]) == 0
    printed = capsys.readouterr().out
    assert "NPU ethos-u55-128 tflite_int8:" in printed and "(estimated" in printed
    rows = {r["name"]: r for r in json.loads((run_copy / "report.json").read_text())["artifacts"]}
    mappings = {m["config"]: m for m in rows["tflite_int8"]["npu"]}
    assert set(mappings) == {"ethos-u55-128", "ethos-u65-256"} and "npu" not in rows["tflite"]  # int8 only
    for m in mappings.values():
        assert m["estimated"] is True and m["cpu_ops"] == 0 and m["npu_ops"] > 0 and m["npu_mac_share"] == 1.0
        assert m["estimated_ms"] == pytest.approx(m["cycles"] / m["clock_hz"] * 1000)
        assert 0 < sum(o["cycles"] for o in m["operators"]) <= m["cycles"]
    assert mappings["ethos-u65-256"]["cycles"] < mappings["ethos-u55-128"]["cycles"]  # the bigger NPU
    from edgeship.runtime.fileio import sha256_file

    for config, m in mappings.items():  # Vela's optimized file is the run's, with its digest in the report
        assert m["file"] == f"npu/model_int8.{config}_vela.tflite" and f"; optimized: {run_copy / m['file']}" in printed
        assert sha256_file(run_copy / m["file"]) == m["sha256"]
        assert (run_copy / m["file"]).read_bytes() != (run_copy / "bundle" / "model_int8.tflite").read_bytes()
    report_md = (run_copy / "report.md").read_text()
    assert "## Ethos-U NPUs (Vela's estimates)" in report_md
    assert f"| tflite_int8 | ethos-u55-128 | {mappings['ethos-u55-128']['npu_ops']}/" in report_md
    bench_rows = json.loads((run_copy / "bench.json").read_text())["rows"]
    assert bench_rows and not any("npu" in r or "ethos" in str(r.get("backend")) for r in bench_rows)

    from edgeship.cli.explore_overlays import build_overlays

    overlays = {o.key: o for o in build_overlays(run_copy).overlays}  # Model Explorer: cycles per node
    cycles = overlays["npu_cycles_ethos-u55-128"].values
    named = {}
    for o in mappings["ethos-u55-128"]["operators"]:  # an op lowered to several NPU operations: its worst
        if o["target"] == "NPU":
            named[o["name"]] = max(o["cycles"], named.get(o["name"], 0))
    assert len(cycles) >= 8 and max(cycles.values()) == max(named.values())
    assert "npu_cpu_ethos-u55-128" not in overlays  # nothing left on the CPU: no such layer

    assert main(["gate", str(run_copy), "--require-npu", "ethos-u55-128", "--max-drop", "100",
                 "--min-agreement", "0"]) == 0
    assert "PASS tflite_int8" in capsys.readouterr().out
    assert main(["gate", str(run_copy), "--require-npu", "ethos-u85-256", "--max-drop", "100",
                 "--min-agreement", "0"]) == 1
    assert "no Vela figures for ethos-u85-256" in capsys.readouterr().out


def test_an_operator_left_on_the_cpu_fails_require_npu_with_vela_reason(reversed_rows, capsys):
    from edgeship.bench.npu import compile_for_npu
    from edgeship.cli import main
    from edgeship.core.records import ParityReport
    from edgeship.export.gate import GateThresholds, evaluate_gate

    mapping = compile_for_npu(reversed_rows, "ethos-u55-128")
    (cpu,) = mapping.cpu_operators
    assert cpu.op == "ReverseV2" and "reverse" in cpu.reason.lower() and mapping.cpu_ops == 1 and cpu.cycles == 0
    row = {"name": "int8", "status": "ok", "format": "tflite", "precision": "int8", "accuracy": 0.9,
           "accuracy_delta_pp": 0.0, "agreement": 1.0, "npu": [mapping.to_json()]}
    (verdict,) = evaluate_gate(ParityReport.from_json({"artifacts": [row]}), GateThresholds(require_npu="ethos-u55-128"))
    assert not verdict.passed and verdict.reasons == [f"ethos-u55-128 leaves ReverseV2 {cpu.name} on the CPU: {cpu.reason}"]
    assert main(["bench", str(reversed_rows), "--runs", "2", "--warmup", "0", "--npu", "ethos-u55-128"]) == 0
    assert f"CPU ReverseV2 {cpu.name}: {cpu.reason}" in capsys.readouterr().out


def test_an_unknown_configuration_names_the_ones_vela_ships():
    from edgeship.bench.npu import compile_for_npu, npu_configs
    from edgeship.runtime.errors import UsageError

    assert {"ethos-u55-128", "ethos-u65-256", "ethos-u85-256"} <= set(npu_configs())
    with pytest.raises(UsageError, match="ethos-u55-128"):
        compile_for_npu(__import__("pathlib").Path("x.tflite"), "ethos-u99")
