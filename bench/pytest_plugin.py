"""pytest plugin: fixtures for latency tests of edgeship artifacts with pytest-benchmark.

    pytest --edgeship-model bundle/model_int8.tflite --edgeship-model bundle/model_float32.onnx

    def test_latency(benchmark, edgeship_classifier, edgeship_input):
        benchmark(edgeship_classifier.predict_proba, edgeship_input)

Each test using the fixtures runs once per model. Models also come from the `edgeship_models` ini
option or the EDGESHIP_MODELS environment variable (os.pathsep-separated). Override the
`edgeship_model` / `edgeship_threads` / `edgeship_batch` fixtures in a conftest to choose them in code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("edgeship", "edgeship latency fixtures")
    group.addoption("--edgeship-model", action="append", default=None, metavar="PATH",
                    help="artifact file or bundle directory for the edgeship_* fixtures (repeatable)")
    group.addoption("--edgeship-threads", type=int, default=None, help="interpreter threads (default: backend's)")
    parser.addini("edgeship_models", type="args", default=[], help="artifacts for the edgeship_* fixtures")


def _configured_models(config) -> list[str]:
    models = config.getoption("edgeship_model") or config.getini("edgeship_models")
    if not models and os.environ.get("EDGESHIP_MODELS"):
        models = [m for m in os.environ["EDGESHIP_MODELS"].split(os.pathsep) if m]
    return list(models)


def pytest_generate_tests(metafunc):
    if "edgeship_model" in metafunc.fixturenames:
        models = _configured_models(metafunc.config)
        if models:
            metafunc.parametrize("edgeship_model", models, ids=[Path(m).name for m in models])


@pytest.fixture
def edgeship_model():
    pytest.skip("no model given: pass --edgeship-model PATH (or set edgeship_models / EDGESHIP_MODELS)")


@pytest.fixture
def edgeship_threads(request):
    return request.config.getoption("edgeship_threads")


@pytest.fixture
def edgeship_batch():
    return 1


@pytest.fixture
def edgeship_classifier(edgeship_model, edgeship_threads):
    """A loaded edgeship.runtime.Classifier for the model under test."""
    from edgeship.runtime import Classifier

    return Classifier.load(edgeship_model, threads=edgeship_threads)


@pytest.fixture
def edgeship_input(edgeship_classifier, edgeship_batch):
    """A prepared NHWC uint8 batch of the model's input size (random pixels: latency ignores content)."""
    from edgeship.bench.harness import sample_input

    return sample_input(edgeship_classifier, edgeship_batch)
