"""docs/extend.md, run: each of its four registrations (a format, a backbone, a runtime backend, a gate check) is
one snippet, and each is then found in the CLI, the config, the report and the gate with no other edit. The
throwaway is removed again afterwards, so the rest of the suite never sees it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

EXTEND = (Path(__file__).resolve().parents[2] / "docs" / "extend.md").read_text(encoding="utf-8")


def _snippet(heading: str) -> dict:
    """Run the Python block under HEADING of docs/extend.md; its namespace."""
    section = EXTEND.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace = {}
    exec(compile(code, f"docs/extend.md: {heading}", "exec"), namespace)
    return namespace


def _help(command: str) -> str:
    import argparse

    from edgeship.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return " ".join(sub.format_help().split())


def test_a_format_is_one_decorated_converter(capsys):
    from edgeship.cli import main
    from edgeship.core.formats import FORMATS, unregister_format
    from edgeship.export.formats import resolve_formats

    try:
        _snippet("An export format")
        assert FORMATS["tflite_copy"].filename == "model_copy.tflite" and FORMATS["tflite_copy"].backend == "tflite"
        assert main(["formats"]) == 0 and "tflite_copy" in capsys.readouterr().out
        assert "tflite_copy" in _help("export")  # the default list and `all` include it
        assert "tflite_copy" in [f.name for f in resolve_formats(None)]
    finally:
        unregister_format("tflite_copy")
    assert "tflite_copy" not in _help("export")


def test_a_backbone_is_one_decorated_constructor(capsys):
    from edgeship.cli import main
    from edgeship.train import TrainConfig
    from edgeship.train.backbones import BACKBONES, build_classifier

    try:
        _snippet("A backbone")
        assert main(["backbones"]) == 0 and "tiny_cnn" in capsys.readouterr().out
        TrainConfig(backbone="tiny_cnn", image_size=32).validate()
        model = build_classifier("tiny_cnn", 3, 32)
        assert model.output_shape == (None, 3)
    finally:
        BACKBONES.pop("tiny_cnn", None)


def test_a_runtime_backend_is_one_registration(run_copy, capsys):
    from edgeship.bench.matrix import artifacts_of, build_cases
    from edgeship.cli import main
    from edgeship.runtime import Classifier
    from edgeship.runtime.backends import unregister_backend

    try:
        _snippet("A runtime backend")
        assert "mirror" in _help("bench") and "mirror" in _help("predict") and "mirror" in _help("export")
        artifacts = artifacts_of(run_copy / "bundle")
        cases = build_cases(artifacts, backend="mirror")
        onnx_files = sorted(a.name for a in artifacts if a.format == "onnx")  # the files it says it reads
        assert "onnx_int8" in onnx_files and sorted(c["name"] for c in cases) == onnx_files
        from edgeship.core.splits import SplitManifest

        image = SplitManifest.read(run_copy / "bundle" / "splits.csv").select("test")[0].path
        ours = Classifier.load(run_copy / "bundle", artifact="onnx_int8", backend="mirror")
        own = Classifier.load(run_copy / "bundle", artifact="onnx_int8")
        assert ours.runtime.startswith("mirror 1.0")
        assert [p.label for p in ours.predict(image, top_k=3)] == [p.label for p in own.predict(image, top_k=3)]
        assert main(["export", str(run_copy), "--formats", "onnx", "--also-backend", "mirror"]) == 0
        rows = {r["name"]: r for r in json.loads((run_copy / "report.json").read_text())["artifacts"]}
        (other,) = rows["onnx"]["other_runtimes"]
        assert other["runtime"].startswith("mirror 1.0") and other["agreement"] == 1.0 and other["max_abs_prob_diff"] == 0
        assert "mirror 1.0" in (run_copy / "report.md").read_text()
        assert "other_runtimes" not in rows["tflite"]  # a .tflite file is not one it reads
    finally:
        unregister_backend("mirror")
    assert "mirror" not in _help("bench")


def test_a_gate_threshold_is_one_check_object(exported_run, tmp_path, capsys):
    from edgeship.cli import main
    from edgeship.export.gate import GateThresholds
    from edgeship.export.gate_checks import unregister_check

    try:
        _snippet("A gate check")
        assert "--max-size" in _help("gate")
        assert main(["gate", str(exported_run), "--max-size", "1000", "--junit", str(tmp_path / "gate.xml")]) == 1
        out = capsys.readouterr().out
        assert "files <= 1000 bytes" in out and re.search(r"FAIL tflite_int8: \d+ bytes > 1000", out)
        assert "bytes &gt; 1000" in (tmp_path / "gate.xml").read_text() or "bytes > 1000" in (tmp_path / "gate.xml").read_text()
        config = tmp_path / "pyproject.toml"
        config.write_text("[tool.edgeship.gate]\nmax_size = 1e12\n")
        assert main(["gate", str(exported_run), "--config", str(config)]) == 0
        assert "files <= 1e+12 bytes" in capsys.readouterr().out
        assert GateThresholds(max_size_bytes=5.0).max_size_bytes == 5.0
        with pytest.raises(Exception, match="finite number"):
            GateThresholds(max_size_bytes=float("inf"))
    finally:
        unregister_check("max_size_bytes")
    assert "--max-size" not in _help("gate") and "max_size_bytes" not in GateThresholds().as_dict()
