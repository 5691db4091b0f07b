"""One export format, one registration: a throwaway format registered at run time shows up in the CLI's
choices, the export and its report, the bench matrix and the files a run owns, with no other edit."""

from __future__ import annotations

import json

import pytest

NAME, FILE = "tflite_copy", "copy_of_float32.tflite"  # a name no glob of core/layout.OWNED matches


@pytest.fixture
def copy_format():
    """The whole registration, as a user's module (or a new converter module of export) writes it."""
    from edgeship.core.formats import FORMATS, export_format, unregister_format
    from edgeship.export.tflite_convert import TFLITE, float32

    @export_format(NAME, FILE, "float32", description="a throwaway float32 TFLite copy", **TFLITE)
    def convert(job):
        return float32(job)

    yield FORMATS[NAME]
    unregister_format(NAME)


def test_a_registered_format_reaches_cli_export_report_bench_and_layout(run_copy, copy_format, capsys):
    from edgeship.bench.matrix import artifacts_of, build_cases
    from edgeship.cli import build_parser, main
    from edgeship.core.layout import RunLayout

    assert main(["formats"]) == 0 and NAME in capsys.readouterr().out
    export_help = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert NAME in export_help.choices["export"].format_help().replace("\n", " ")

    assert main(["export", str(run_copy), "--formats", f"tflite,{NAME}"]) == 0
    report = json.loads((run_copy / "report.json").read_text())
    rows = {row["name"]: row for row in report["artifacts"]}
    # the same conversion twice: the figures of the copy are the float32 row's, computed on its own bytes
    assert rows[NAME]["path"] == f"bundle/{FILE}" and rows[NAME]["status"] == "ok"
    assert (rows[NAME]["accuracy"], rows[NAME]["agreement"]) == (rows["tflite"]["accuracy"], rows["tflite"]["agreement"])
    assert rows[NAME]["readiness"]["gpu_delegate"] == rows["tflite"]["readiness"]["gpu_delegate"]
    assert f"| {NAME} |" in (run_copy / "report.md").read_text()

    cases = build_cases(artifacts_of(run_copy / "bundle"), backend="tflite")
    assert [c["path"].rsplit("/", 1)[-1] for c in cases if c["name"] == NAME] == [FILE]
    assert run_copy / "bundle" / FILE in RunLayout(run_copy).owned_paths()


def test_a_format_name_is_registered_once(copy_format):
    from edgeship.core.formats import register_format
    from edgeship.runtime.errors import UsageError

    with pytest.raises(UsageError, match="already registered"):
        register_format(copy_format)
    with pytest.raises(UsageError, match="reads it as a list"):
        register_format(copy_format.__class__("a,b", "x.tflite", "float32", "tflite", False, "", None))


@pytest.fixture
def new_family():
    """A file family edgeship has never seen (`.tfl`: TFLite bytes under another suffix), its runtime and its
    format, registered the way one new module of edgeship (or a user's) would register them."""
    from edgeship.core.formats import FORMATS, export_format, unregister_format
    from edgeship.export.embed import embed_tflite
    from edgeship.export.readiness import tflite_readiness
    from edgeship.export.tflite_convert import float32
    from edgeship.runtime.backends import Backend, register_backend, unregister_backend
    from edgeship.runtime.tflite_session import TFLiteSession, probe_tflite

    def open_tfl(path, threads=None, data=None, **_):
        session = TFLiteSession(path, threads=threads, data=data)
        session.backend = "tfl"
        return session

    register_backend(Backend("tfl", (".tfl",), open_tfl, probe_tflite))

    @export_format("tfl_float32", "model_float32.tfl", "float32", "tfl", "TFLite bytes as a .tfl file",
                   embedder=embed_tflite, readiness=tflite_readiness)
    def convert(job):
        return float32(job)

    yield FORMATS["tfl_float32"]
    unregister_format("tfl_float32")
    unregister_backend("tfl")


def test_a_new_file_family_is_one_backend_and_one_format(run_copy, new_family, capsys):
    from edgeship.bench.matrix import artifacts_of, build_cases
    from edgeship.cli import main
    from edgeship.core.formats import device_file_formats
    from edgeship.core.layout import RunLayout
    from edgeship.runtime import Classifier

    assert new_family.file_format == "tfl" and "tfl" in device_file_formats()  # the gate's device checks apply
    assert main(["export", str(run_copy), "--formats", "tflite,tfl_float32"]) == 0
    rows = {row["name"]: row for row in json.loads((run_copy / "report.json").read_text())["artifacts"]}
    assert (rows["tfl_float32"]["format"], rows["tfl_float32"]["status"]) == ("tfl", "ok")
    assert rows["tfl_float32"]["accuracy"] == rows["tflite"]["accuracy"] and rows["tfl_float32"]["agreement"] == 1.0
    assert rows["tfl_float32"]["readiness"]["gpu_delegate"] == rows["tflite"]["readiness"]["gpu_delegate"]
    lone = Classifier.load(run_copy / "bundle" / "model_float32.tfl")  # a lone file: its suffix names its runtime
    assert lone.session.backend == "tfl" and lone.labels == Classifier.load(run_copy / "bundle").labels
    cases = build_cases(artifacts_of(run_copy / "bundle"), backend="tfl")
    assert [c["name"] for c in cases] == ["tfl_float32"]
    assert run_copy / "bundle" / "model_float32.tfl" in RunLayout(run_copy).owned_paths()
    assert main(["gate", str(run_copy), "--max-drop", "100", "--min-agreement", "0"]) in (0, 1)
    assert "PASS tfl_float32" in capsys.readouterr().out
