"""Every command the README and the docs show runs: a refactor cannot break a documented command unnoticed.

Each `edgeship ...` line of their code blocks is one of three kinds, and a new line must be put in one:
- a usage synopsis (`[--flag]`, DATA/RUN placeholders): its sub-command's `--help` must work;
- a runnable example: it runs here, as typed, in a folder laid out like the README's (runs/x, photos/, ...),
  with only the timed-run counts of `bench` lowered;
- an example that needs what this machine lacks (a Raspberry Pi on the network): named with its reason and
  the test that covers it against a local sshd or the emulated Pi.
Their Python snippets run too (the training one on a smaller dataset, the ImageNet one without its download;
docs/extend.md's are run by test_extend_docs.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# The README, then the docs' pages in their reading order: "README" below means all of them.
PAGES = ("README.md", "docs/index.md", "docs/guides/cli.md", "docs/guides/ci-gate.md", "docs/guides/int8.md",
         "docs/guides/formats.md", "docs/guides/devices.md", "docs/guides/sweep.md", "docs/guides/python-api.md",
         "docs/extend.md", "docs/measurements.md", "docs/design.md")
README = "\n".join((REPO / page).read_text(encoding="utf-8") for page in PAGES)
FAST_BENCH = " --runs 2 --warmup 0"

# The README's runnable examples, in the order they run (later ones use what earlier ones wrote), with the exit
# codes each may give here: the gate's verdict on the tiny test model is not what the README's demo gets.
RUNNABLE = {
    "edgeship formats": (0,),
    "edgeship backbones": (0,),
    "find photos -name '*.jpg' | xargs edgeship predict runs/x --top-k 1 --json": (0,),
    "find photos -name '*.jpg' | edgeship predict runs/x - --json": (0,),
    "edgeship predict MODEL photos/ 'more/*.jpg' cat.png --top-k 3 --threads 2": (0,),
    "edgeship predict MODEL photos/ --json": (0,),
    "edgeship predict MODEL --video clip.mp4 --every 5": (0,),
    "edgeship predict mobilenet_v2.tflite cat.jpg --labels imagenet_labels.txt --input-range -1,1": (0,),
    "edgeship predict resnet.onnx cat.jpg --labels classes.txt --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375": (0,),
    "edgeship gate --reference runs/x --candidate colleague.tflite --data holdout/ --labels classes.txt --input-range 0,255": (0, 1),
    "edgeship gate runs/demo --min-accuracy 0.9": (0, 1),
    "edgeship gate runs/demo --remeasure": (0,),
    "edgeship bench someone_elses.tflite theirs.onnx": (0,),
    "~/edgeship/bin/edgeship predict bundle/ photo.jpg --top-k 3": (0,),
    "edgeship bench runs/demo --threads 1,2 --batch 1,4": (0,),
    "edgeship bench runs/demo --compare baseline/bench.json --max-slowdown 10%": (0, 1),
    "edgeship outlier runs/demo --out runs/outlier --factor 100": (0,),
    "edgeship export runs/outlier --formats tflite,tflite_int8,onnx,onnx_int8": (0,),
    "edgeship gate runs/outlier": (0, 1),
    "edgeship export runs/outlier --formats tflite,tflite_int8,onnx,onnx_int8 --max-drop 0.5": (0,),
    "edgeship gate runs/outlier --min-speedup 1.2": (0, 1),
    "edgeship bench runs/outlier --threads 1 --profile": (0,),
    "edgeship qat runs/outlier --out runs/outlier_qat": (0,),
    "edgeship export runs/outlier_qat --formats tflite,tflite_int8,onnx,onnx_int8": (0,),
    "edgeship gate runs/outlier_qat": (0, 1),
    "edgeship explore runs/outlier --write-only": (0,),
}
ELSEWHERE = {  # needs a board on the network; each is run against a real sshd or the emulated Pi by these tests
    "edgeship bench runs/demo --target ssh://pi@raspberrypi.local --target ssh://pi@192.168.1.20:2222":
        "test_bench_remote.py (two targets side by side)",
    "edgeship gate runs/x --target ssh://pi@raspberrypi --target ssh://pi@pi5:2222 --junit gate.xml":
        "test_target_gate.py",
    "edgeship gate runs/x --target ssh://pi@raspberrypi --identity ~/.ssh/id_ed25519": "test_aarch64_target.py",
    "edgeship bench runs/x --target ssh://pi@raspberrypi --threads 1,4": "test_aarch64_target.py",
    # minutes of training on the demo's 1,797 digits: test_sweep.py runs the same command on a three-candidate space
    # (its figures in the README are from this command, stated with the time it took)
    "edgeship sweep runs/demo/data --out runs/sweep --space tiny --max-latency 0.1ms --max-size 1MB --max-drop 1":
        "test_sweep.py (a three-candidate --space file, the same flags)",
    "edgeship sweep /nfs/photos --out /nfs/sweeps/pi4 --target ssh://pi@raspberrypi --max-latency 20ms --max-size 4MB "
    "--storage postgresql://sweeper:PASSWORD@db.lan/sweeps":
        "test_sweep.py (two workers on a PostgreSQL server the test starts; the emulated Pi as a target)",
    # minutes of training on 3,000 photo crops (docs/guides/int8.md's QAT figures): the same backbone, weights file,
    # split flags and residual outlier run there on 6 classes of crops for a few epochs
    "edgeship train photos10 --out runs/p96 --backbone mobilenet_v2 --image-size 96 --weights coral_mnv2.weights.h5 \\":
        "test_pretrained_backbone.py",
    "edgeship outlier runs/p96 --out runs/outlier --residual --factor 30": "test_pretrained_backbone.py",
    # serves until Ctrl+C and opens a browser: run with --no-browser and a headless Chromium there
    "edgeship explore runs/outlier --artifact tflite_int8": "test_explore.py (headless Chromium)",
}
ERROR_EXAMPLE = "edgeship train photos/ --out runs/x"  # the README shows its one-line error: it must be that line
PLACEHOLDERS = re.compile(r"\[|\b(DATA|RUN|MODEL|IMAGE|NEW|DIR|A|B)\b")


def readme_commands() -> list[str]:
    """Every `edgeship ...` command line inside the README's code blocks, without prompt and comment."""
    commands, inside = [], False
    for line in README.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        text = line.strip().removeprefix("$ ")
        if inside and re.match(r"(find .*\| )?(xargs )?(~/edgeship/bin/)?edgeship ", text.split("| ")[-1]) or (
                inside and text.startswith("find ") and "edgeship " in text):
            commands.append(re.sub(r"\s+#.*$", "", text).strip())
    return commands


def _subcommand(command: str) -> str:
    return command.split("edgeship ", 1)[1].split()[0]


def test_every_readme_command_is_covered():
    commands = readme_commands()
    assert len(commands) > 30  # the extraction itself works
    uncovered = [c for c in commands if c not in RUNNABLE and c not in ELSEWHERE and c != ERROR_EXAMPLE
                 and not PLACEHOLDERS.search(c)]
    assert not uncovered, f"README commands no test runs (add them to RUNNABLE or ELSEWHERE): {uncovered}"
    stale = [c for c in [*RUNNABLE, *ELSEWHERE, ERROR_EXAMPLE] if c not in commands]
    assert not stale, f"listed here but no longer in the README: {stale}"


def test_every_subcommand_the_readme_names_has_help(cli):
    from edgeship.cli import build_parser

    parser = build_parser()
    known = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    named = sorted({_subcommand(c) for c in readme_commands()})
    assert set(named) <= set(known), set(named) - set(known)
    for sub in named:
        result = cli(sub, "--help")
        assert result.returncode == 0 and "usage: edgeship" in result.stdout, (sub, result.stderr)
    assert cli("--help").returncode == 0


def _without_saved_model(run: Path) -> None:
    """The shared run exports every format; a run `make demo` writes has no SavedModel (only written when named:
    it is code, and `gate --remeasure` would rightly want --trust-code for it). Its record and row go together."""
    import json

    from edgeship.runtime import Bundle

    bundle = Bundle.load(run / "bundle")
    bundle.artifacts = [r for r in bundle.artifacts if r.name != "saved_model"]
    bundle.save(run / "bundle")
    shutil.rmtree(run / "bundle" / "saved_model")
    report = json.loads((run / "report.json").read_text())
    report["artifacts"] = [a for a in report["artifacts"] if a["name"] != "saved_model"]
    (run / "report.json").write_text(json.dumps(report))


@pytest.fixture(scope="module")
def readme_folder(exported_run, tmp_path_factory):
    """A folder laid out as the README's examples assume: runs/x (and runs/demo) a trained and exported run,
    photos/ and holdout/ of images, models made elsewhere, a video clip."""
    from PIL import Image

    from edgeship.core.splits import SplitManifest
    from edgeship.core.tensorflow import load_keras_model
    from edgeship.core.tfenv import captured_output, import_keras
    from edgeship.runtime import Bundle

    from .test_cli_habits import _plain_onnx_nchw

    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(exported_run, root / "runs" / "x")
    # the split manifest names images relative to itself: make its data folder resolve from the copy too
    first = (exported_run / "bundle" / "splits.csv").read_text().splitlines()[1].split(",")[0]
    ups = first.split("/").count("..")
    top = first.split("/")[ups]
    link = (root / "runs" / "x" / "bundle").joinpath(*[".."] * ups).resolve() / top
    link.symlink_to((exported_run / "bundle").joinpath(*[".."] * ups).resolve() / top)
    (root / "runs" / "demo").symlink_to("x")
    (root / "bundle").symlink_to("runs/x/bundle")
    _without_saved_model(root / "runs" / "x")
    bundle = Bundle.load(root / "runs" / "x" / "bundle")
    rows = SplitManifest.read(root / "runs" / "x" / "bundle" / "splits.csv").select("test")
    for i, row in enumerate(rows[:12]):
        image = Image.open(row.path).convert("RGB")
        for folder in ("photos", f"photos/{row.label}", "more", f"holdout/{row.label}"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        image.save(root / "photos" / row.label / f"{i}.jpg")
        image.save(root / "more" / f"{i}.jpg")
        image.save(root / "holdout" / row.label / f"{i}.png")
    first = Image.open(rows[0].path).convert("RGB").resize((128, 128))
    for name in ("cat.png", "cat.jpg", "photo.jpg", "photo.png"):
        first.save(root / name)
    labels = "".join(f"{label}\n" for label in bundle.info.labels)
    for name in ("imagenet_labels.txt", "classes.txt"):
        (root / name).write_text(labels)
    tf, _ = import_keras()
    with captured_output():
        plain = tf.lite.TFLiteConverter.from_keras_model(load_keras_model(root / "runs/x/bundle/model.keras")).convert()
    for name in ("mobilenet_v2.tflite", "colleague.tflite", "someone_elses.tflite"):
        (root / name).write_bytes(plain)  # what a plain converter writes: no metadata of any kind
    import onnx

    model = onnx.load(str(root / "runs/x/bundle/model_float32.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(root / "resnet.onnx"))
    _plain_onnx_nchw(str(root / "theirs.onnx"))
    import cv2

    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(12):
        writer.write(np.full((64, 64, 3), i * 20, np.uint8))
    writer.release()
    return root


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_every_runnable_readme_command_runs(readme_folder):
    for command, codes in RUNNABLE.items():
        typed = command.replace("~/edgeship/bin/", "").replace(" MODEL ", " runs/x ")
        if typed.startswith("edgeship bench "):
            typed += FAST_BENCH
            if "--threads 1,2 --batch 1,4" in typed:
                typed += " --backend tflite"  # the matrix and its flags; every backend is benched in test_bench.py
        if "--compare baseline/bench.json" in command:  # a baseline of the same rows (another --threads compares
            # nothing, which is exit 2: a speed gate that compared nothing must not pass)
            (readme_folder / "baseline").mkdir(exist_ok=True)
            baseline = _shell(f"edgeship bench runs/demo{FAST_BENCH} --json baseline/bench.json", readme_folder)
            assert baseline.returncode == 0, baseline.stderr[-2000:]
        started = time.perf_counter()
        result = _shell(typed, readme_folder)
        print(f"{time.perf_counter() - started:6.1f} s  {typed}")
        assert result.returncode in codes, f"{typed}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        assert "Traceback" not in result.stderr, f"{typed}\n{result.stderr[-3000:]}"


def test_the_readme_error_example_prints_what_the_readme_shows(tmp_path):
    shown = README.split(f"$ {ERROR_EXAMPLE}\n", 1)[1].splitlines()[0]
    result = _shell(ERROR_EXAMPLE, tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == shown


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / page).read_text(encoding="utf-8"), flags=re.S)


def test_every_page_is_read_here():
    """A new page in docs/ is either listed in PAGES (its commands are then checked) or the test fails."""
    pages = {p.relative_to(REPO).as_posix() for p in (REPO / "docs").rglob("*.md")} - {
        "docs/reference/cli.md", "docs/reference/schemas.md"}  # generated: flags and fields, no commands
    assert pages == set(PAGES) - {"README.md"}


def _replace(code: str, old: str, new: str) -> str:
    assert old in code, f"the README snippet no longer contains {old!r}: update this test"
    return code.replace(old, new)


def test_the_readme_python_snippets_run(readme_folder, tmp_path, monkeypatch):
    (mediapipe_snippet,), (api,), (plugin,), (tour,) = (_python_blocks(page) for page in (
        "docs/guides/formats.md", "docs/guides/python-api.md", "docs/guides/devices.md", "README.md"))
    monkeypatch.chdir(readme_folder)
    exec(compile(mediapipe_snippet, "README: MediaPipe", "exec"), {})

    work = tmp_path / "api"
    work.mkdir()
    for name in ("some_digit.png", "a.png", "b.jpg"):
        shutil.copy(readme_folder / "cat.png", work / name)
    monkeypatch.chdir(work)
    code = _replace(api, 'write_digits_dataset("data/digits")',
                    'write_digits_dataset("data/digits", size=32, per_class=40, classes=4)')
    code = _replace(code, "epochs=15))", "epochs=2, show_progress=False))")
    code = _replace(code, 'bench_run("runs/digits", runs=200)', 'bench_run("runs/digits", runs=2, warmup=0)')
    code = _replace(code, 'train("food-101/", "runs/food", config)', "config.validate()  # offline: no ImageNet download")
    # the sweep on three small candidates for one epoch, judged on size only (no figure of this machine's speed)
    (work / "small.toml").write_text('precisions = ["int8"]\n[[backbones]]\nname = "small_cnn"\n'
                                     'alpha = [0.25, 0.5]\nimage_size = [16]\n')
    code = _replace(code, "budget=Budget(max_latency_ms=0.1, max_size_bytes=1_000_000, max_drop_pp=1.0)",
                    "budget=Budget(max_size_bytes=1_000_000, max_drop_pp=1.0), show_progress=False, bench_runs=5")
    code = _replace(code, 'space="tiny", plan=TrainingPlan(epochs=9)', 'space="small.toml", plan=TrainingPlan(epochs=1)')
    namespace = {}
    exec(compile(code, "docs: the Python API", "exec"), namespace)
    tour = _replace(tour, 'write_digits_dataset("data/digits")',
                    'write_digits_dataset("data/tour", size=32, per_class=40, classes=4)')
    tour = _replace(tour, '"runs/digits", TrainConfig(', '"runs/tour", TrainConfig(')
    tour = _replace(tour, "epochs=15))", "epochs=2, show_progress=False))")
    tour = _replace(tour, 'export_run("runs/digits")', 'export_run("runs/tour", show_progress=False)')
    tour = _replace(tour, '"runs/digits/bundle/model_int8.tflite"', '"runs/tour/bundle/model_int8.tflite"')
    shown = {}
    exec(compile(tour, "README: the tour", "exec"), shown)
    assert [v.artifact for v in shown["verdicts"]] and shown["clf"].labels
    assert Path(namespace["swept"].pick.run).resolve().parent == (work / "runs" / "sweep" / "trials").resolve()
    assert namespace["swept"].pick.test["accuracy"] is not None
    assert namespace["clf"].predict("some_digit.png", top_k=3)[0].label in namespace["clf"].labels
    assert namespace["report"].artifacts and namespace["probs"].shape == (1, 4)
    assert "def test_latency(benchmark, edgeship_classifier, edgeship_input)" in plugin  # run by test_bench.py
