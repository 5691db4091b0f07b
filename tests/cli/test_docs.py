"""The documentation: a README a newcomer reads in minutes, a site that builds without a warning, and reference
pages that are what the code says (generated from the CLI parser and the JSON Schemas)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
    block = lines[lines.index("```sh") + 1: lines.index("```")]
    assert [line.split()[:2] for line in block] == [["make", "demo"], ["make", "test"]]


def test_the_reference_pages_are_generated_from_the_code():
    done = subprocess.run([sys.executable, str(REPO / "docs" / "gen_reference.py"), "--check"], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_the_cli_reference_names_every_flag_of_every_command():
    import argparse

    from edgeship.cli.main import build_parser

    page = (REPO / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    for name, sub in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices.items():
        assert f"## `edgeship {name}`" in page
        for flag in (o for action in sub._actions for o in action.option_strings
                     if o.startswith("--") and not isinstance(action, argparse._HelpAction)):
            assert f"`{flag}`" in page, f"{name} {flag}"


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "extend/index.html", "reference/cli/index.html", "design/index.html"} <= built
