"""`edgeship sweep --target tflm --max-arena …`: a microcontroller's search. The arena is measured on the untrained
model (it does not depend on the weights) and a candidate over it is never trained (train() calls counted); the pick
is gated on TensorFlow Lite Micro parity and its own exported file's arena; Vela's estimate can budget an NPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install 'edgeship[mcu]')")

SPACE = """precisions = ["int8"]
[[backbones]]
name = "small_cnn"
alpha = [0.25, 0.5, 1.0]
image_size = [16]
"""
ARENA_BUDGET = 12_000  # small_cnn at 16 px: a0.25 and a0.5 allocate under it, a1.0 over (measured below)


@pytest.fixture(scope="module")
def micro_sweep(tmp_path_factory):
    import edgeship.train
    from edgeship.sweep import Budget, SweepOptions, TrainingPlan, run_sweep
    from edgeship.train import write_digits_dataset

    root = tmp_path_factory.mktemp("micro")
    digits = write_digits_dataset(root / "digits", size=16, per_class=40, classes=4)
    (root / "space.toml").write_text(SPACE)
    trained, real_train = [], edgeship.train.train
    patch = pytest.MonkeyPatch()
    patch.setattr(edgeship.train, "train", lambda data, out, config=None: (trained.append(Path(out).name),
                                                                           real_train(data, out, config))[1])
    try:
        result = run_sweep(digits, root / "sweep", SweepOptions(
            budget=Budget(max_arena_bytes=ARENA_BUDGET), targets=["tflm"], space=root / "space.toml",
            plan=TrainingPlan(epochs=3), show_progress=False))
    finally:
        patch.undo()
    return result, trained, digits, root


def test_a_candidate_over_the_arena_is_never_trained(micro_sweep):
    from edgeship.runtime.tflm_session import TFLMSession

    result, trained, _, _ = micro_sweep
    rows = {r.key: r for r in result.record.rows}
    measured = {key: TFLMSession(result.json_path.parent / "measure" / f"{key}.model_int8.tflite").arena_bytes
                for key in rows}
    for key, row in rows.items():  # TFLM's own allocations: untrained, or the finalist's exported file
        own = TFLMSession(Path(row.run, "bundle", "model_int8.tflite")).arena_bytes if row.run else measured[key]
        assert row.arena_bytes == own, key
    over = [k for k, arena in measured.items() if arena > ARENA_BUDGET]
    assert over == ["small_cnn-16px-a1"]
    assert rows[over[0]].verdict == "over-budget" and rows[over[0]].run is None
    assert rows[over[0]].reasons == [f"TFLM arena {measured[over[0]] / 1e3:.3g} kB > {ARENA_BUDGET / 1e3:.3g} kB"]
    assert sorted(trained) == ["small_cnn-16px-a0.25", "small_cnn-16px-a0.5"]  # and nothing else, ever
    assert result.record.targets == [{"target": "tflm", "emulated": False}]  # implied by --max-arena


def test_the_pick_fits_and_answers_on_tflm_as_on_litert(micro_sweep):
    from edgeship.core.report import load_report
    from edgeship.core.schema import schema_errors

    result, _, _, _ = micro_sweep
    pick = result.pick
    assert pick is not None and pick.arena_bytes <= ARENA_BUDGET and pick.gate["passed"]
    report, _ = load_report(pick.run)
    row = next(a for a in report.artifacts if a.name == pick.format)
    (tflm,) = [o for o in row.other_runtimes if o.backend == "tflm"]
    assert tflm.agreement >= 0.98 and tflm.arena_bytes == pick.arena_bytes  # the exported file's own arena
    assert pick.bench_ms == {}  # nothing was timed: a microcontroller is not this machine
    data = json.loads(result.json_path.read_text())
    assert schema_errors("sweep", data) == [] and data["budget"]["max_arena_bytes"] == ARENA_BUDGET
    md = result.markdown.read_text()
    assert f"TFLM arena ≤ {ARENA_BUDGET} bytes" in md and "| TFLM arena | flash |" in md


def test_an_npu_budget_nothing_meets_is_one_line_and_trains_nothing(micro_sweep, cli):
    pytest.importorskip("ethosu.vela", reason="ethos-u-vela is not installed (pip install 'edgeship[mcu]')")
    _, _, digits, root = micro_sweep
    out = root / "npu-sweep"
    done = cli("sweep", digits, "--out", out, "--space", root / "space.toml", "--npu", "ethos-u55-128",
               "--max-npu-ms", "1us", "--target", "tflm", "--epochs", "2")
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("edgeship: error")]
    assert len(errors) == 1 and "ethos-u55-128 est. <= 0.001 ms" in errors[0], done.stderr
    record = json.loads((out / "sweep.json").read_text())
    assert record["trainings"] == 0 and all(r["npu_ms"] > 0.001 for r in record["rows"])
    assert all(r["reasons"] == [f"ethos-u55-128 est. {r['npu_ms']:.3g} ms > 0.001 ms"] for r in record["rows"])
    wrong = cli("sweep", digits, "--out", root / "bad", "--space", root / "space.toml", "--npu", "ethos-u99")
    assert wrong.returncode == 2 and "--npu ethos-u99: not an Ethos-U configuration" in wrong.stderr


def test_the_tiny_space_holds_models_that_fit_a_256kb_arena(tmp_path):
    """The tiny preset is called microcontroller-sized: its small CNNs must fit a 256 KB arena under TFLM."""
    from edgeship.sweep.measure import TFLM, measure_architecture
    from edgeship.sweep.space import load_space

    tiny = [a for a in load_space("tiny").architectures if a.backbone == "small_cnn"]
    largest = max(tiny, key=lambda a: (a.image_size, a.alpha))
    cost = measure_architecture(largest, ["tflite_int8"], 10, tmp_path, [TFLM])["tflite_int8"]
    assert cost.micro_error is None and 0 < cost.arena_bytes <= 256_000, cost
    assert cost.flash_bytes <= 1_000_000
