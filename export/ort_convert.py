"""ONNX Runtime's mobile format (`.ort`): the ONNX artifact with its batch fixed at 1 (NNAPI and CoreML take only
fixed shapes; the readiness check flags `needs_fixed_shapes` on the dynamic-batch ONNX), serialized by
`onnxruntime.tools.convert_onnx_models_to_ort`, the tool ONNX Runtime's mobile packages are built around.

The *Runtime* optimization style is used: the file keeps the basic-level graph and records the extended
optimizations for the runtime to apply, so one `.ort` runs on an ARM phone and on this x86 machine alike (the
*Fixed* style bakes in this CPU's NCHWc layouts). Metadata (labels, input spec) goes into the ONNX graph before
the conversion: an `.ort` file is not edited afterwards, and ONNX Runtime keeps `metadata_props` in it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from edgeship.core.formats import export_format

from . import onnx_convert
from .embed import embed_onnx
from .readiness import ort_readiness


def embed_ort(data: bytes, metadata: dict) -> bytes:
    """ORT format: the metadata goes into the ONNX graph first, then the graph is serialized as `.ort`."""
    return to_ort(embed_onnx(data, metadata))


ORT = dict(backend="onnxruntime", embedder=embed_ort, readiness=ort_readiness, default=False)


def fixed_batch(data: bytes, batch: int = 1) -> bytes:
    """The model with every input's dynamic dimensions set (batch first) and its output shapes fixed to match."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load_from_string(data)
    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.dim_value > 0 else batch for d in value.type.tensor_type.shape.dim]
        make_input_shape_fixed(model.graph, value.name, dims)
    fix_output_shapes(model)
    return model.SerializeToString()


@export_format("ort", "model_float32.ort", "float32",
               description="ONNX Runtime mobile format (.ort), float32, batch fixed at 1", **ORT)
def float32(job) -> bytes:
    return fixed_batch(onnx_convert.float32(job))


@export_format("ort_int8", "model_int8.ort", "int8", needs_calibration=True,
               description="ONNX Runtime mobile format (.ort), static QDQ int8, batch fixed at 1 (NNAPI, CoreML)",
               **ORT)
def static_int8(job) -> bytes:
    return fixed_batch(onnx_convert.static_int8(job))


def to_ort(data: bytes) -> bytes:
    """ONNX bytes -> ORT-format bytes (optimization style Runtime)."""
    from onnxruntime.tools import convert_onnx_models_to_ort as converter

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="edgeship-ort-") as tmp:
        source = Path(tmp, "model.onnx")
        source.write_bytes(data)
        converter.convert_onnx_models_to_ort(source, output_dir=Path(tmp, "out"),
                                             optimization_styles=[converter.OptimizationStyle.Runtime])
        made = sorted(Path(tmp, "out").rglob("*.ort"))
        if not made:
            raise RuntimeError("convert_onnx_models_to_ort wrote no .ort file")
        return made[0].read_bytes()
