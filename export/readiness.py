"""Device readiness: will a phone's accelerator take this artifact, or will it fall back to the CPU?

Answered by the vendors' own tools, one checker per runtime backend:
- TFLite: `tf.lite.experimental.Analyzer.analyze(gpu_compatibility=True)` for the GPU delegate. The wheels
  of TF 2.21 and ai-edge-litert 2.3 are built without the delegate's compatibility table (their Analyzer
  calls even a Flex op "compatible"), so the op list the Analyzer dumps is also checked against the op
  names that table (`lite/tools/versioning/gpu_compatibility.cc`) accepts. Per-op parameter rules (ranks,
  broadcasting, strides) are not repeated here: a "ready" is necessary, not sufficient.
- ONNX: ONNX Runtime's mobile usability checker (`check_onnx_model_mobile_usability`), its partitioning
  of the graph for NNAPI (Android) and CoreML (iOS).
Each accelerator's entry says `ready` (all of the model runs there in one piece); the gate's
`--require-gpu-delegate` fails an on-device artifact that no accelerator takes.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

from edgeship.core.formats import FORMATS
from edgeship.core.records import Readiness

# The builtin ops the TFLite GPU delegate's compatibility check accepts (its CheckGpuDelegateCompatibility switch).
GPU_DELEGATE_OPS = frozenset("""
ABS ADD ADD_N ATAN2 AVERAGE_POOL_2D BATCH_MATMUL CAST CEIL CONCATENATION CONV_2D COS CUMSUM DENSIFY
DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP FLOOR
FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GELU GREATER GREATER_EQUAL HARD_SWISH LEAKY_RELU LESS LESS_EQUAL
LOG LOGICAL_AND LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL ONE_HOT PACK PAD
PADV2 POW PRELU QUANTIZE REDUCE_MAX REDUCE_MIN REDUCE_PROD RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR
RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SELECT_V2 SIGN SIN SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE
SQUARED_DIFFERENCE STABLEHLO_CLAMP STRIDED_SLICE SUB SUM TANH TILE TRANSPOSE TRANSPOSE_CONV
Convolution2DTransposeBias MaxPoolingWithArgmax2D MaxUnpooling2D Resampler
""".split())
_OP_LINE = re.compile(r"^\s+Op#(\d+) (\S+?)\(", re.MULTILINE)
_GPU_WARNING = re.compile(r"GPU COMPATIBILITY WARNING: (.+)")


def tflite_readiness(path: Path, scratch: Path | None = None) -> dict:  # noqa: ARG001 - no temporary files
    """{"gpu_delegate": {...}} from the TFLite Analyzer's GPU-compatibility run over the file."""
    import tensorflow as tf

    text = io.StringIO()
    with redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    return {"gpu_delegate": gpu_delegate_verdict(text.getvalue(), f"tensorflow {tf.__version__}")}


def gpu_delegate_verdict(analysis: str, tool_version: str) -> dict:
    """The Analyzer's report turned into a verdict: its own warnings, and its op list against GPU_DELEGATE_OPS."""
    ops = _OP_LINE.findall(analysis)
    if not ops:
        return {"ready": False, "tool": f"tf.lite.experimental.Analyzer ({tool_version})",
                "issues": ["the Analyzer listed no operators: cannot tell"]}
    issues = [m.strip() for m in _GPU_WARNING.findall(analysis) if "has GPU delegate compatibility issues" not in m]
    unsupported = sorted({name for _, name in ops if name not in GPU_DELEGATE_OPS})
    analyzer_says_ok = not issues
    for name in unsupported:
        where = [int(i) for i, op in ops if op == name]
        issues.append(f"{name} (op #{', #'.join(map(str, where[:5]))}{', …' if len(where) > 5 else ''}) is not "
                      f"an op the GPU delegate takes: it runs on the CPU")
    entry = {"ready": not issues, "tool": f"tf.lite.experimental.Analyzer ({tool_version})", "ops": len(ops),
             "unsupported_ops": unsupported, "issues": issues}
    if unsupported and analyzer_says_ok:
        entry["note"] = ("the Analyzer reported no issue (its GPU-compatibility table is not built into this "
                         "wheel); the unsupported ops come from the GPU delegate's op list")
    return entry


# ONNX Runtime's checker, per execution provider: (report key, checker call)
ORT_MOBILE_EPS = (
    ("nnapi", lambda checker, model, fixed: checker.check_nnapi_partitions(model, fixed)),
    ("coreml_mlprogram", lambda checker, model, fixed: checker.check_coreml_partitions(
        model, fixed, "coreml_supported_mlprogram_ops.md")),
    ("coreml_neuralnetwork", lambda checker, model, fixed: checker.check_coreml_partitions(
        model, fixed, "coreml_supported_neuralnetwork_ops.md")),
)


def onnx_readiness(path: Path, scratch: Path | None = None) -> dict:
    """{"nnapi": {...}, "coreml_mlprogram": {...}, "coreml_neuralnetwork": {...}} from ONNX Runtime's mobile
    usability checker, on the model optimized to the BASIC level as the tool does before it partitions."""
    import onnxruntime
    from onnxruntime.tools import onnx_model_utils
    from onnxruntime.tools.mobile_helpers import usability_checker

    from edgeship.runtime.backends import refuse_onnx_external_data

    refuse_onnx_external_data(path.read_bytes(), str(path))  # the checker would read it from beside the model
    logging.getLogger("usability_checker").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="edgeship-readiness-", dir=scratch) as tmp:
        optimized = Path(tmp) / path.name
        onnx_model_utils.optimize_model(path, optimized, use_external_initializers=True)
        model = onnx_model_utils.ModelProtoWithShapeInfo(optimized.resolve()).model_with_shape_info
        dynamic_inputs, _ = usability_checker.check_shapes(model.graph)
        tool = f"onnxruntime.tools.check_onnx_model_mobile_usability (onnxruntime {onnxruntime.__version__})"
        return {key: _partition_entry(check(usability_checker, model, True),
                                      check(usability_checker, model, False) if dynamic_inputs else None, tool)
                for key, check in ORT_MOBILE_EPS}


def _partition_entry(info, fixed_info, tool: str) -> dict:
    """One execution provider's partitioning as figures; the tool's suitability YES is `ready`. Our exports
    leave the batch dimension dynamic, which these EPs cannot take: the tool then partitions again as if
    the shapes were fixed (what `python -m onnxruntime.tools.make_dynamic_shape_fixed` does before
    shipping), and the better of the two counts, flagged `needs_fixed_shapes`."""
    def rank(i):
        return i.suitability(), i.num_supported_nodes

    needs_fixed = fixed_info is not None and rank(fixed_info) > rank(info)
    best = fixed_info if needs_fixed else info
    entry = {"ready": best.suitability().name == "YES", "suitability": best.suitability().name,
             "partitions": best.num_partitions, "nodes": best.num_nodes, "supported_nodes": best.num_supported_nodes,
             "coverage": round(best.num_supported_nodes / best.num_nodes, 4) if best.num_nodes else 0.0,
             "unsupported_ops": sorted(best.unsupported_ops), "tool": tool}
    if needs_fixed:
        entry["needs_fixed_shapes"] = True
    return entry


def readiness(format_name: str, path: Path, scratch: Path | None = None) -> Readiness | None:
    """Readiness figures of one artifact file by its format's registered check, or None for a format no phone
    accelerator runs (keras, ...). A checker that fails says so in the entry instead of failing the export.
    Temporary files go to SCRATCH. Checkers give the tools' figures as dicts; the record is made here."""
    fmt = FORMATS.get(format_name)
    checker = fmt.readiness if fmt is not None else None
    if checker is None:
        return None
    try:
        return Readiness.from_json(checker(Path(path), scratch))
    except Exception as exc:  # a readiness tool crashing must not lose the parity figures
        return Readiness(error=f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")


def ort_readiness(path: Path, scratch: Path | None = None) -> dict:  # noqa: ARG001 - no temporary files
    """An `.ort` file, per execution provider: are all its op types on that provider's published list
    (onnxruntime/tools/mobile_helpers/*_supported_ops.md)? Read with ONNX Runtime's own ORT-format reader
    (`tools.ort_format_model`). The ORT format keeps no value shapes for the partition count the ONNX check
    gives, so this is op coverage only; the batch is fixed, which NNAPI and CoreML need."""
    import onnxruntime
    from onnxruntime.tools.ort_format_model import OperatorTypeUsageManager, OrtFormatModelProcessor

    required: dict = {}
    OrtFormatModelProcessor(str(path), required, OperatorTypeUsageManager()).process()
    used = sorted({f"{domain}:{op}" for domain, opsets in required.items() for ops in opsets.values() for op in ops})
    tool = (f"onnxruntime.tools.ort_format_model + mobile_helpers op lists (onnxruntime {onnxruntime.__version__}); "
            f"op types only, batch fixed")
    entries = {}
    for key, listing in ORT_OP_LISTS:
        supported = _published_ops(listing)
        missing = [op.split(":", 1)[1] for op in used if op not in supported]
        entries[key] = {"ready": not missing, "ops": len(used), "unsupported_ops": missing, "tool": tool,
                        "issues": [f"{op} is not on the provider's op list: it runs on the CPU" for op in missing]}
    return entries


ORT_OP_LISTS = (("nnapi", "nnapi_supported_ops.md"), ("coreml_mlprogram", "coreml_supported_mlprogram_ops.md"),
                ("coreml_neuralnetwork", "coreml_supported_neuralnetwork_ops.md"))


def _published_ops(filename: str) -> set[str]:
    """`domain:op` of the two-column table in one of ONNX Runtime's supported-op lists."""
    from onnxruntime.tools import mobile_helpers

    ops = set()
    for line in (Path(mobile_helpers.__file__).parent / filename).read_text().splitlines():
        cells = line.strip().split("|")
        if line.startswith("|") and len(cells) == 4 and ":" in cells[1]:
            ops.add(cells[1].strip())
    return ops
