"""`gate --max-arena` and `--max-flash`: the tensor arena a microcontroller needs, measured under TensorFlow Lite Micro at export
(`--also-backend tflm`), decides; a file TFLM will not run fails with TFLM's reason; no figure fails closed."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install 'edgeship[mcu]')")


def test_the_arena_gate_reads_what_tflm_measured(run_copy, tmp_path, capsys):
    from edgeship.cli import main

    formats = "tflite,tflite_fp16,tflite_int8"
    assert main(["gate", str(run_copy), "--max-arena", "1MB"]) == 1  # no TFLM figures yet: not a pass
    assert "export with --also-backend tflm" in capsys.readouterr().out
    assert main(["export", str(run_copy), "--formats", formats, "--also-backend", "tflm"]) == 0
    rows = {r["name"]: r for r in json.loads((run_copy / "report.json").read_text())["artifacts"]}
    (int8,) = [o for o in rows["tflite_int8"]["other_runtimes"] if o["backend"] == "tflm"]
    (fp16,) = [o for o in rows["tflite_fp16"]["other_runtimes"] if o["backend"] == "tflm"]
    (fp32,) = [o for o in rows["tflite"]["other_runtimes"] if o["backend"] == "tflm"]
    assert int8["agreement"] >= 0.97 and 0 < int8["arena_bytes"] < fp32["arena_bytes"]
    assert "DEQUANTIZE" in fp16["error"] and "arena_bytes" not in fp16
    capsys.readouterr()

    just_under = int8["arena_bytes"] - 1
    assert main(["gate", str(run_copy), "--max-arena", str(just_under), "--max-drop", "100", "--min-agreement", "0"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL tflite_int8: tensor arena {int8['arena_bytes']:,} bytes > {just_under:,}" in out
    assert "FAIL tflite_fp16: TensorFlow Lite Micro cannot run it: op DEQUANTIZE" in out
    config = tmp_path / "pyproject.toml"
    config.write_text(f"[tool.edgeship.gate]\nmax_arena = {int8['arena_bytes']}\nmax_drop = 100\nmin_agreement = 0\n")
    main(["gate", str(run_copy), "--config", str(config)])
    assert "PASS tflite_int8" in capsys.readouterr().out
    from edgeship.core.report import size_text

    report_md = (run_copy / "report.md").read_text()
    assert "| arena | flash |" in report_md and f"| {size_text(int8['arena_bytes'])} |" in report_md

    # flash: the file plus TFLM's code allowance; the input and output buffers are the arena's own
    from edgeship.runtime.tflm_session import RUNTIME_FLASH_BYTES

    size = (run_copy / "bundle" / "model_int8.tflite").stat().st_size
    assert int8["flash_bytes"] == size + RUNTIME_FLASH_BYTES and int8["io_bytes"] == 32 * 32 * 3 + 4
    capsys.readouterr()
    assert main(["gate", str(run_copy), "--max-flash", str(int8["flash_bytes"] - 1), "--max-drop", "100"]) == 1
    assert f"FAIL tflite_int8: flash (file + runtime) {int8['flash_bytes']:,} bytes > " in capsys.readouterr().out
    config.write_text(f"[tool.edgeship.gate]\nmax_flash = {int8['flash_bytes']}\nmax_drop = 100\n")
    main(["gate", str(run_copy), "--config", str(config)])
    assert "PASS tflite_int8" in capsys.readouterr().out
