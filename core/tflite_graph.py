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


def single_op_models(model: bytes) -> list[tuple[TFLiteOp, str, bytes | None]]:
    """Each op of subgraph 0 as a model of its own: (the op, its node name = first output tensor's name, the
    bytes). The op keeps its tensors, shapes, quantization and constant data; its other inputs become the model's
    inputs. An op that reads only constants (a float16 model's DEQUANTIZE of its weights) gets None: the
    runtime computes it once when the model loads, not per image. Timed one by one they say where a whole model's
    time goes: LiteRT 2.3's Python API has no op profiler, and these models run through the same interpreter and
    kernels as the whole one."""
    from tensorflow.lite.python import schema_py_generated as schema

    parsed = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = parsed.subgraphs[0]
    ops, tensors = read_graph(model)

    def stored(index: int) -> bool:
        buffer = parsed.buffers[graph.tensors[index].buffer]
        return buffer.data is not None and len(buffer.data) > 0

    constant_only = {op.index for op in ops if all(i < 0 or stored(i) for i in op.inputs)}
    made_by = {index: op for op in ops if op.index in constant_only for index in op.outputs}
    out = []
    for op in ops:
        name = tensors[op.outputs[0]].name if op.outputs else f"op{op.index}"
        if op.index in constant_only:
            out.append((op, name, None))
            continue
        # weights that a constant-only op makes (float16 weights widened by a DEQUANTIZE) come along with that
        # op, as in the whole model, so the delegate packs them at load instead of taking them as an input
        feeders = list(dict.fromkeys(made_by[i] for i in op.inputs if i in made_by))
        out.append((op, name, _one_op_model(schema, parsed, [*feeders, op], op, stored, made_by)))
    return out


def _one_op_model(schema, parsed, members: list, op: TFLiteOp, stored, made_by) -> bytes:
    """The FlatBuffer of MEMBERS (an op and the constant-only ops feeding it) as a model whose inputs are OP's."""
    import copy

    import flatbuffers

    graph = parsed.subgraphs[0]
    buffers, kept, remap = [schema.BufferT()], [], {}
    for member in members:
        for index in (*member.inputs, *member.outputs):
            if index < 0 or index in remap:
                continue
            tensor = copy.copy(graph.tensors[index])
            if stored(index):
                buffers.append(parsed.buffers[tensor.buffer])
                tensor.buffer = len(buffers) - 1
            else:
                tensor.buffer = 0
            remap[index] = len(kept)
            kept.append(tensor)
    operators = []
    for member in members:
        single = copy.copy((graph.operators or [])[member.index])
        single.inputs = [remap[i] if i >= 0 else -1 for i in member.inputs]
        single.outputs = [remap[i] for i in member.outputs]
        operators.append(single)
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.operators = kept, operators
    subgraph.inputs = [remap[i] for i in dict.fromkeys(op.inputs) if i >= 0 and not stored(i) and i not in made_by]
    subgraph.outputs = [remap[i] for i in op.outputs]
    one = schema.ModelT()
    one.version, one.operatorCodes, one.subgraphs, one.buffers = parsed.version, parsed.operatorCodes, [subgraph], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(one.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
