"""Without the `mcu` extra (tflite-micro, ethos-u-vela) nothing breaks: the TFLM rows and the NPU commands say how
to install it, in one line, and everything else is measured as before. The packages are hidden from the import
system here (`sys.modules[name] = None`), so the test holds on a machine that has them."""

from __future__ import annotations

import json
import sys

import pytest

INSTALL = "pip install 'edgeship[mcu]'"


@pytest.fixture()
def no_mcu(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] in ("tflite_micro", "ethosu")] + ["tflite_micro", "ethosu"]:
        monkeypatch.setitem(sys.modules, name, None)  # a cached submodule would be found without its parent


def test_without_the_mcu_extra_the_rows_say_how_to_install_it(run_copy, no_mcu, capsys):
    from edgeship.cli import main
    from edgeship.export import export_run

    result = export_run(run_copy, ["tflite", "tflite_int8", "tflite_int8_c"], show_progress=False,
                        also_backends=("tflm",))
    assert result.failed == []
    rows = {a.name: a for a in result.parity.artifacts}
    for name in ("tflite", "tflite_int8"):
        (tflm,) = rows[name].other_runtimes
        assert tflm.backend == "tflm" and INSTALL in tflm.error and tflm.arena_bytes is None
        assert rows[name].agreement >= 0.97  # LiteRT's own figures, measured as before
    header = (run_copy / "bundle" / "model_int8_c" / "model_data.h").read_text()
    assert f"EDGESHIP_TENSOR_ARENA_BYTES: not measured ({INSTALL} and export again)" in header
    assert rows["tflite_int8_c"].agreement == rows["tflite_int8"].agreement

    assert main(["gate", str(run_copy), "--max-arena", "256KB", "--max-drop", "100"]) == 1
    assert f"FAIL tflite_int8: tflite-micro is not installed here; {INSTALL}" in capsys.readouterr().out
    assert main(["bench", str(run_copy), "--backend", "tflite", "--runs", "2", "--warmup", "0",
                 "--npu", "ethos-u55-128"]) == 2
    err = capsys.readouterr().err
    assert f"ethos-u-vela is not installed here; {INSTALL}" in err and len(err.strip().splitlines()) == 1
    assert json.loads((run_copy / "report.json").read_text())["artifacts"]  # the report still stands


def test_a_microcontroller_sweep_without_tflm_is_refused_before_any_work(small_digits, tmp_path, no_mcu):
    from edgeship.runtime.errors import UsageError
    from edgeship.sweep import Budget, SweepOptions, run_sweep

    with pytest.raises(UsageError, match=r"--target tflm measures with TensorFlow Lite Micro, which is not "
                                         r"installed here; pip install 'edgeship\[mcu\]'"):
        run_sweep(small_digits, tmp_path / "sweep", SweepOptions(budget=Budget(max_arena_bytes=256_000),
                                                                 space="tiny", show_progress=False))
    assert not (tmp_path / "sweep" / "measure").exists()
