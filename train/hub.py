"""TF-Hub feature-vector backbones: `--backbone hub:HANDLE_OR_DIR`.

What works on Keras 3 (measured, see the README): `tensorflow_hub.KerasLayer` fails inside a Keras 3
model, so the SavedModel is wrapped in `keras.layers.TFSMLayer(path, call_endpoint="serving_default")`.
The handle is resolved with `tensorflow_hub.resolve` (a local SavedModel directory needs no network;
a URL handle downloads once into TF-Hub's cache). Hub image models take RGB in [0, 1]: a Rescaling layer
in front keeps edgeship's 0-255 input contract.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgeship.core.errors import BackboneError
from edgeship.core.tfenv import captured_output, import_keras

from .backbone_spec import BACKBONE_LAYER, BackboneSpec

HUB_DEFAULT_SIZE = 224


def resolve_handle(handle: str) -> Path:
    """A local SavedModel directory for HANDLE (a directory, or a TF-Hub / Kaggle URL resolved through
    tensorflow_hub). Fails fast with the reason when offline or when tensorflow_hub is missing."""
    local = Path(handle).expanduser()
    hub, problem = None, "not installed"
    if importlib.util.find_spec("tensorflow_hub") is not None:
        try:
            import tensorflow_hub as hub
        except ImportError as exc:  # e.g. installed without its tf_keras dependency
            problem = f"does not import: {exc}"
    if hub is None:
        if local.is_dir():
            return local  # what tensorflow_hub.resolve returns for a local directory
        raise BackboneError(f"hub:{handle}: resolving TF-Hub handles needs tensorflow_hub ({problem}; "
                            f"pip install 'edgeship[hub]'), or pass a local SavedModel directory")

    try:
        with captured_output():
            resolved = Path(hub.resolve(handle))
    except Exception as exc:  # network errors, bad handles: urllib / tf.errors / ValueError
        raise BackboneError(f"hub:{handle}: cannot resolve ({str(exc).splitlines()[0][:160]}); offline, pass a "
                            f"local SavedModel directory instead") from exc
    if not (resolved / "saved_model.pb").is_file():
        raise BackboneError(f"hub:{handle}: {resolved} holds no saved_model.pb (is it a TF2 SavedModel?)")
    return resolved


def hub_backbone(handle: str) -> BackboneSpec:
    def build(shape, weights):
        if weights is not None:
            raise BackboneError(f"hub:{handle}: a TF-Hub model carries its own weights; drop --weights")
        path = resolve_handle(handle)
        _, keras = import_keras()
        inputs = keras.Input(shape, name="pixels")
        x = keras.layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
        try:
            with captured_output():
                layer = keras.layers.TFSMLayer(str(path.resolve()), call_endpoint="serving_default",
                                               trainable=False, name="hub")
                features = layer(x)
        except Exception as exc:
            raise BackboneError(f"hub:{handle}: cannot use it as a Keras layer "
                                f"({str(exc).splitlines()[0][:200]})") from exc
        if isinstance(features, dict):  # serving signatures return {output name: tensor}
            features = next(iter(features.values()))
        if len(features.shape) != 2:
            raise BackboneError(f"hub:{handle}: expected a feature-vector model (N, D) output, got {features.shape}")
        return keras.Model(inputs, features, name=BACKBONE_LAYER)

    return BackboneSpec(f"hub:{handle}", HUB_DEFAULT_SIZE, "the TF-Hub model's own", "TF-Hub feature vector", build)
