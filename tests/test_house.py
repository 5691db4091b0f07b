"""Small promises of the redesign (#23): one name per concept, with a deprecation path for the old one."""

from __future__ import annotations

import warnings

import pytest


def test_classifier_runtime_is_the_one_name_and_implementation_warns(exported_run):
    from edgeship.runtime import Classifier

    classifier = Classifier.load(exported_run / "bundle", artifact="tflite")
    from edgeship.runtime.backends import TFLITE_INTERPRETERS

    assert classifier.runtime in {label for _, label in TFLITE_INTERPRETERS}
    with pytest.warns(DeprecationWarning, match="use Classifier.runtime"):
        old = classifier.implementation
    assert old == classifier.runtime
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classifier.runtime  # the contract's name never warns
