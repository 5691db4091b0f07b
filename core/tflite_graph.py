"""A TFLite model's graph read from its FlatBuffer with TensorFlow's generated schema (`schema_py_generated`),
not from an interpreter's private `_get_ops_details()`: the ops of the main subgraph in execution order with
their input and output tensors, and per tensor its name, shape, type, per-tensor quantization scale and, for a
constant, the bytes of its data. Workstation code (TensorFlow installed); the device runtime never needs it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# bytes per element of the tensor types a classifier uses (INT4 packs two per byte)
ELEMENT_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1,
                 "INT16": 2, "UINT16": 2, "INT8": 1, "FLOAT64": 8, "UINT32": 4, "UINT64": 8, "INT4": 0.5}


@dataclass(frozen=True)
class TFLiteOp:
    index: int
    name: str  # the builtin operator's name (CONV_2D), or the custom code
    inputs: tuple[int, ...]  # tensor indices; -1 marks an optional input left out
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TFLiteTensor:
    index: int
    name: str
    scale: float | None  # the per-tensor quantization scale; None for float and per-channel tensors
    shape: tuple[int, ...] = ()
    dtype: str = "FLOAT32"
    const_bytes: int | None = None  # a constant's data size; None for activations and graph inputs

    @property
    def elements(self) -> int:
        count = 1
        for dim in self.shape:
            count *= max(1, int(dim))
        return count

    @property
    def nbytes(self) -> float:
        return self.elements * ELEMENT_BYTES.get(self.dtype, 4)


@dataclass(frozen=True)
class TFLiteGraph:
    ops: list[TFLiteOp]
    tensors: dict[int, TFLiteTensor]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@lru_cache(maxsize=1)
def _names() -> tuple[dict[int, str], dict[int, str]]:
    from tensorflow.lite.python import schema_py_generated as schema

    def table(cls):
        return {value: name for name, value in vars(cls).items() if not name.startswith("_")}

    return table(schema.BuiltinOperator), table(schema.TensorType)


def read_model(model: bytes) -> TFLiteGraph:
    """Subgraph 0 of MODEL. Operator codes below 127 live in the deprecated byte field, newer ones in the int
    field: the larger of the two is the code."""
    from tensorflow.lite.python import schema_py_generated as schema

    parsed = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = parsed.subgraphs[0]
    op_names, type_names = _names()
    ops = []
    for index, op in enumerate(graph.operators or []):
        code = parsed.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = (code.customCode or b"custom").decode() if builtin == schema.BuiltinOperator.CUSTOM else op_names[builtin]
        ops.append(TFLiteOp(index, name, _ints(op.inputs), _ints(op.outputs)))
    tensors = {}
    for index, tensor in enumerate(graph.tensors or []):
        scales = tensor.quantization.scale if tensor.quantization is not None else None
        scale = float(scales[0]) if scales is not None and len(scales) == 1 and scales[0] else None
        buffer = parsed.buffers[tensor.buffer] if parsed.buffers and tensor.buffer < len(parsed.buffers) else None
        data = None if buffer is None else (len(buffer.data) if buffer.data is not None else (buffer.size or None))
        tensors[index] = TFLiteTensor(index, tensor.name.decode() if tensor.name else f"tensor{index}", scale,
                                      _ints(tensor.shape), type_names.get(tensor.type, "FLOAT32"), data or None)
    return TFLiteGraph(ops, tensors, _ints(graph.inputs), _ints(graph.outputs))


def read_graph(model: bytes) -> tuple[list[TFLiteOp], dict[int, TFLiteTensor]]:
    """(ops, tensors by index) of subgraph 0."""
    graph = read_model(model)
    return graph.ops, graph.tensors


def _ints(values) -> tuple[int, ...]:
    return () if values is None else tuple(int(v) for v in values)
