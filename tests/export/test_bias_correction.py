"""Empirical bias correction (Nagel et al. 2019, section 4.2) as a step of the `--max-drop` search: with int8
weights a layer's mean output moves; after the correction it is back where the float layer had it."""

import numpy as np


def _model(keras, rng):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv0")(inputs)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.ReLU(name="relu0")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Conv2D(6, 1, use_bias=False, name="nobias")(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    for layer in model.layers:  # weights with a visible rounding bias: uneven ranges per channel
        weights = layer.get_weights()
        if layer.name in ("conv0", "dw"):
            weights[0] = (rng.normal(0, 1, weights[0].shape) * rng.uniform(0.01, 1, weights[0].shape[-1])).astype("float32")
        if layer.name == "bn0":
            weights = [rng.uniform(0.5, 2, 8), rng.normal(0, 1, 8), rng.normal(0, 5, 8), rng.uniform(10, 50, 8)]
        layer.set_weights([np.asarray(w, dtype="float32") for w in weights])
    return model


def _mean_error(keras, model, reference, images, layers, feed):
    """Mean per channel of LAYERS (applied in turn) in MODEL with the first one's kernel rounded to int8, minus the
    same LAYERS of the float REFERENCE, both on the input the float reference gives them (its FEED layer's
    output, or the images): what the correction promises, E[Q(W)x + b'] = E[Wx + b] over float inputs."""
    from edgeship.export.bias_correction import per_channel_int8

    x = images if feed is None else keras.Model(reference.inputs, reference.get_layer(feed).output)(images)
    first = model.get_layer(layers[0])
    weights = first.get_weights()
    kept = [w.copy() for w in weights]
    weights[0] = per_channel_int8(weights[0].astype(np.float64), layers[0] == "dw").astype("float32")
    first.set_weights(weights)
    quantized, floating = x, x
    for name in layers:
        quantized, floating = model.get_layer(name)(quantized), reference.get_layer(name)(floating)
    first.set_weights(kept)
    return np.asarray(quantized - floating, dtype=np.float64).reshape(-1, quantized.shape[-1]).mean(axis=0)


def test_bias_correction_puts_the_mean_output_back():
    from edgeship.core.tfenv import import_keras
    from edgeship.export.bias_correction import correct_biases

    _, keras = import_keras()
    rng = np.random.default_rng(0)
    model = _model(keras, rng)
    images = rng.uniform(0, 255, (24, 16, 16, 3)).astype("float32")
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    cases = {"conv0": (["conv0", "bn0"], None), "dw": (["dw"], "relu0")}
    before = {name: _mean_error(keras, model, reference, images, *case) for name, case in cases.items()}
    done = correct_biases(model, images)
    assert [line.split(" ")[0] for line in done.layers] == ["conv0", "dw"]
    assert done.skipped == ["nobias: no bias and no BatchNorm after it to take the correction"]
    # the correction went where the converter folds it: bn0's beta (times γ/σ), dw's bias; nothing else moved
    for name in ("relu0", "nobias", "head"):
        for ours, theirs in zip(model.get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    after = {name: _mean_error(keras, model, reference, images, *case) for name, case in cases.items()}
    for name in before:
        assert np.abs(before[name]).max() > 1e-2, name  # rounding moved the mean visibly
        # back to float rounding: measured on the same float inputs the correction was computed from
        assert np.abs(after[name]).max() < 1e-3 * np.abs(before[name]).max() + 1e-5, (name, after[name])


def test_recipe_labels_name_each_data_free_step():
    from edgeship.export.quant_search import Recipe

    assert Recipe("min-max", equalized=True).label == "equalized (CLE)"
    assert Recipe("min-max", equalized=True, bias_corrected=True).label == "equalized + bias-corrected (CLE + BC)"
    assert Recipe("MinMax", bias_corrected=True).label == "bias-corrected (BC)"
    assert Recipe("MinMax", equalized=True, bias_corrected=True, float_nodes=("a", "b")).label == \
        "equalized, bias-corrected, 2 node(s) float"


class _Strategy:
    """The search's view of a format: every float-layer set converts except those with the node 'all'."""

    def __init__(self):
        from edgeship.export.quant_search import Recipe

        self.plain = Recipe("MinMax")

    def variants(self):
        return iter(())

    def with_float_layers(self, base, nodes):
        from dataclasses import replace

        from edgeship.export.quant_search import Candidate

        if "all" in nodes:
            raise ValueError("Please check if the quantized model is in debug mode")
        return Candidate(replace(base.recipe, float_nodes=tuple(nodes)), b"")


def test_a_float_set_the_converter_refuses_ends_the_search_and_keeps_its_trials():
    """TFLite's QuantizationDebugger refuses a denylist that leaves nothing quantized; the format used to fail
    there and lose every trial (seen at 224 px once bias correction changed which base the layers went on)."""
    from edgeship.export.quant_diagnosis import LayerError
    from edgeship.export.quant_search import Candidate, Recipe, Trial, _search

    trials = []

    def attempt(candidate):
        trial = Trial(candidate, 0.5, 0.5, 10.0, 1.0, meets_budget=False)
        trials.append(trial)
        return trial

    attempt(Candidate(Recipe("MinMax"), b""))
    layers = [LayerError(n, "Conv", 1.0, "sqnr_db", keep_float=[n]) for n in ("a", "b", "all", "c")]
    _search(_Strategy(), attempt, trials, layers)
    assert [t.candidate.float_layers for t in trials] == [[], ["a"], ["a", "b"]]
