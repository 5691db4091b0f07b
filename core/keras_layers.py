"""A Keras model's layers with nested models opened up: what training (BatchNorm settings, fine-tuning) and
export (equalization, bias correction) both walk."""

from __future__ import annotations


def leaf_layers(model) -> list:
    """Every non-container layer, in order (nested models expanded)."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(leaf_layers(layer))
        else:
            out.append(layer)
    return out
