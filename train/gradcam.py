"""Grad-CAM (Selvaraju et al. 2017): which part of the image made the model pick a class.

The heat map is the backbone's last spatial feature map weighted by the gradient of the class score
with respect to it, averaged over space, then ReLU'd and upsampled. Every edgeship classifier keeps that
map as the output of its `backbone` layer, so this works for every built-in backbone including the small
CNN; TF-Hub feature vectors have no spatial map and are refused with that reason.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from edgeship.core.errors import BackboneError
from edgeship.core.tfenv import import_keras
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import atomic_write_bytes
from edgeship.runtime.inputs import expand_inputs
from edgeship.runtime.preprocess import prepare_image
from edgeship.runtime.spec import ModelInfo
from PIL import Image

from .backbones import backbone_output


@dataclass
class Explanation:
    image: Path
    class_index: int
    class_name: str
    probability: float
    heatmap: np.ndarray  # (H, W) in [0, 1] at the model's input size

    def peak(self) -> tuple[int, int]:
        """(row, column) of the hottest pixel."""
        return tuple(int(v) for v in np.unravel_index(np.argmax(self.heatmap), self.heatmap.shape))


def _grad_model(model):
    _, keras = import_keras()
    try:
        feature_map = backbone_output(model)
    except BackboneError as exc:
        raise UsageError(f"{exc}; Grad-CAM needs a model built by edgeship train") from exc
    if len(feature_map.shape) != 4:
        raise UsageError(f"{model.name}: its backbone outputs a feature vector {tuple(feature_map.shape)}, not a "
                         f"spatial map (a TF-Hub feature-vector model): Grad-CAM has nothing to localize")
    final = model.get_layer("probabilities")
    return keras.Model(model.inputs, [feature_map, final.input, model.output]), final


def gradcam(model, pixels: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, int, float]:
    """(heat map (H, W) in [0, 1], class explained, its probability) for one HWC 0-255 image.

    The score differentiated is the class *logit* (before softmax/sigmoid), as in the paper: the
    probability would mix in the evidence against every other class."""
    tf, _ = import_keras()
    grad_model, final = _grad_model(model)
    kernel, bias = final.kernel, final.bias
    x = tf.constant(pixels[None].astype(np.float32))
    with tf.GradientTape() as tape:
        feature_map, head_input, outputs = grad_model(x, training=False)
        logits = tf.matmul(head_input, kernel) + bias
        if outputs.shape[-1] == 1:  # binary sigmoid: class 1 has logit z, class 0 has -z
            probs = tf.concat([1.0 - outputs, outputs], axis=-1)
            logits = tf.concat([-logits, logits], axis=-1)
        else:
            probs = outputs
        index = int(tf.argmax(probs[0])) if class_index is None else class_index
        score = logits[:, index]
    grads = tape.gradient(score, feature_map)[0]
    weights = tf.reduce_mean(grads, axis=(0, 1))
    cam = tf.nn.relu(tf.reduce_sum(feature_map[0] * weights, axis=-1)).numpy()
    cam = cam / cam.max() if cam.max() > 0 else cam
    height, width = pixels.shape[:2]
    resized = np.asarray(Image.fromarray((cam * 255).astype(np.uint8)).resize((width, height), Image.BILINEAR))
    return resized.astype(np.float32) / 255.0, index, float(probs[0, index])


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image with the heat map blended on top (matplotlib's 'jet' colours)."""
    from matplotlib import colormaps

    colours = colormaps["jet"](heatmap)[..., :3] * 255.0
    return np.clip((1 - alpha) * pixels.astype(np.float32) + alpha * colours, 0, 255).astype(np.uint8)


def explain(model, info: ModelInfo, images: Sequence[str | Path], out_dir: str | Path,
            class_name: str | None = None, upscale: int = 224) -> list[tuple[Explanation, Path]]:
    """Write IMAGE_gradcam_CLASS.png for each image into OUT_DIR: the image and the overlay side by side,
    titled with the class explained and its probability, with the heat map's colour scale."""
    if class_name is not None and class_name not in info.labels:
        raise UsageError(f"--class {class_name!r} is not a label of this model ({', '.join(info.labels)})")
    target = None if class_name is None else info.labels.index(class_name)
    out_dir = Path(out_dir)
    results = []
    stems = _unique_stems([Path(image) for image in images])
    for image, stem in zip(images, stems):
        pixels = prepare_image(image, info.input)
        heatmap, index, probability = gradcam(model, pixels, target)
        explanation = Explanation(Path(image), index, info.labels[index], probability, heatmap)
        slug = re.sub(r"[^\w.-]+", "_", info.labels[index])
        target_path = out_dir / f"{stem}_gradcam_{slug}.png"
        atomic_write_bytes(target_path, _picture(pixels, explanation, chosen=target is not None, upscale=upscale))
        results.append((explanation, target_path))
    return results


def _picture(pixels: np.ndarray, explanation: Explanation, chosen: bool, upscale: int) -> bytes:
    buffer = io.BytesIO()
    explanation_figure(pixels, explanation, chosen, upscale).savefig(buffer, format="png")
    return buffer.getvalue()


def explanation_figure(pixels: np.ndarray, explanation: Explanation, chosen: bool = False, upscale: int = 224):
    """The model's input and the heat-map overlay side by side, the class and its probability in the title,
    and a colour bar saying what the colours mean (a matplotlib Figure; no pyplot state)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    inches = max(2.2, upscale / 100)
    figure = Figure(figsize=(2 * inches + 0.9, inches + 0.7), dpi=100, layout="constrained")
    left, right, bar = figure.subplots(1, 3, width_ratios=[1, 1, 0.06])
    left.imshow(pixels, interpolation="nearest")
    right.imshow(overlay(pixels, explanation.heatmap), interpolation="nearest")
    left.set_title("model input", fontsize=9)
    right.set_title("what decided it", fontsize=9)
    for axis in (left, right):
        axis.set_axis_off()
    figure.colorbar(ScalarMappable(Normalize(0, 1), colormaps["jet"]), cax=bar, label="relative importance (Grad-CAM)")
    why = "explained class" if chosen else "predicted"
    figure.suptitle(f"{explanation.image.name}: {why} {explanation.class_name} ({explanation.probability:.1%})",
                    fontsize=10)
    return figure



def _unique_stems(paths: list[Path]) -> list[str]:
    """Output names that never collide: a/img.png and b/img.png become a_img and b_img (deeper parents
    when needed, then a counter), so one overlay never silently replaces another."""
    stems = [p.stem for p in paths]
    depth = 0
    while len(set(stems)) < len(stems) and depth < 8:
        depth += 1
        stems = ["_".join([*Path(p).resolve().parent.parts[-depth:], p.stem]).lstrip("/_") for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return [re.sub(r"[^\w.-]+", "_", stem) for stem in unique]


def explain_run(model: str | Path, images: Sequence[str | Path], out_dir: str | Path | None = None,
                class_name: str | None = None, trust_code: bool = False) -> list[tuple[Explanation, Path]]:
    """`edgeship explain`: MODEL is a run, a bundle or a `.keras` file with edgeship.json beside it; the
    overlays go to OUT_DIR (default RUN/explain). The model loads in Keras' safe mode unless TRUST_CODE."""
    from edgeship.core.layout import RunLayout
    from edgeship.core.tensorflow import load_keras_model
    from edgeship.runtime.spec import Bundle

    target = Path(model)
    if target.suffix.lower() in (".tflite", ".onnx"):
        raise UsageError(f"{target}: Grad-CAM needs the Keras model (its gradients): give the run directory, its "
                         f"bundle or its model.keras, not a {target.suffix} file")
    images = expand_inputs(images)  # files, folders (searched recursively) and globs, as `predict` takes them
    bundle_dir = target.parent if target.suffix == ".keras" else RunLayout.find(target).bundle
    bundle = Bundle.load(bundle_dir)
    model_path = target if target.suffix == ".keras" else bundle_dir / (bundle.keras_model or "model.keras")
    keras_model = load_keras_model(model_path, trust_code, bundle)
    out = Path(out_dir) if out_dir else bundle_dir.parent / "explain"
    return explain(keras_model, bundle.info, images, out, class_name)
