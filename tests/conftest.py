"""Shared fixtures: a reduced digits dataset and one trained + exported run for the whole session.

Tiny on purpose (4 classes x 40 images, 32 px, small CNN, a few epochs) so the suite stays fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("EDGESHIP_PROGRESS", "0")

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
# Benchmarks build MobileNetV2 at 224 px and time it: `make bench` runs them, `make test` does not.
collect_ignore_glob = [] if os.environ.get("EDGESHIP_BENCH") == "1" else ["benchmarks/*"]
SMALL_CLASSES = 4
SMALL_PER_CLASS = 40


def run_cli(*args, env=None, check=False, timeout=600) -> subprocess.CompletedProcess:
    """Run `python -m edgeship ARGS` in a fresh interpreter, as a user would."""
    merged = {**os.environ, **(env or {})}
    result = subprocess.run([sys.executable, "-m", "edgeship", *map(str, args)], capture_output=True, text=True,
                            env=merged, timeout=timeout, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"edgeship {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def small_digits(tmp_path_factory) -> Path:
    from edgeship.train import write_digits_dataset

    return write_digits_dataset(tmp_path_factory.mktemp("digits") / "data", size=32, per_class=SMALL_PER_CLASS,
                                classes=SMALL_CLASSES)


@pytest.fixture(scope="session")
def trained_run(small_digits, tmp_path_factory) -> Path:
    from edgeship.train import SplitConfig, TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "run"
    # no unknown threshold here: tests compare predicted labels with Keras' (test_train_features covers it)
    train(small_digits, out, TrainConfig(backbone="small_cnn", image_size=32, epochs=6, batch_size=16,
                                         splits=SplitConfig(seed=0), unknown_recall=None, show_progress=False))
    return out


def _has_openvino() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


@pytest.fixture(scope="session")
def exported_run(trained_run) -> Path:
    from edgeship.export import export_run

    # every registered format (the opt-in ones too), and each device file under OpenVINO as well
    export_run(trained_run, ["all"], show_progress=False, also_backends=("openvino",) if _has_openvino() else ())
    return trained_run


@pytest.fixture(scope="session")
def qat_exported_run(trained_run, tmp_path_factory) -> Path:
    """trained_run fine-tuned with fake quantization (`edgeship qat`, one epoch) into a new run, its int8 formats
    exported from the ranges it learned."""
    from edgeship.export import export_run
    from edgeship.train.qat_run import qat_run

    out = tmp_path_factory.mktemp("qat") / "run"
    qat_run(trained_run, out, epochs=1, show_progress=False)
    export_run(out, ["tflite", "tflite_int8", "onnx_int8"], show_progress=False)
    return out


@pytest.fixture()
def run_copy(exported_run, tmp_path) -> Path:
    """A private copy of the exported run for tests that modify it."""
    target = tmp_path / "run"
    shutil.copytree(exported_run, target)
    return target


@pytest.fixture()
def cli():
    """`cli(*args)` runs the edgeship command line in a subprocess."""
    return run_cli


def _helper_module(filename: str):
    """A helper module of tests/ (not a test file), loaded once as edgeship_test_<name>: with
    --import-mode=importlib the tests folder is not on sys.path."""
    import importlib.util

    name = f"edgeship_test_{Path(filename).stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(filename))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory):
    """A real sshd on 127.0.0.1 (see tests/sshd.py); skipped with the reason when none can be had."""
    sshd_module = _helper_module("sshd.py")
    binary, reason = sshd_module.find_or_install_sshd()
    if binary is None:
        pytest.skip(reason)
    server = sshd_module.start_sshd(binary, tmp_path_factory.mktemp("sshd"))
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def aarch64_target(tmp_path_factory):
    """A Debian arm64 userland under QEMU with its own sshd (see tests/aarch64.py), built once and cached
    outside the repository; skipped with the reason only where emulation cannot be set up at all."""
    _helper_module("sshd.py")  # aarch64.py builds on its helpers
    module = _helper_module("aarch64.py")
    try:
        target = module.start_target(tmp_path_factory.mktemp("aarch64"))
    except module.Unavailable as exc:
        print(f"\nno emulated aarch64 target: {exc}", file=sys.stderr)
        pytest.skip(str(exc))
    yield target
    target.stop()
