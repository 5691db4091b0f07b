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
