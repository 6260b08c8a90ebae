"""Reading an ONNX file without trusting it.

Every check here runs before anything is allocated from what the file declares: a model is a
few protobuf messages whose numbers (dimensions, lengths, offsets, versions) say how much memory
the rest of bnnc would use. Each problem becomes one BnncError naming the file, tensor or node.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..diagnostics import BnncError, node_label, quote
from .qonnx_ops import QONNX_DOMAINS

# Limits. A binarized network that fits an FPGA is far below each of them.
MAX_FILE_BYTES = 1 << 30  # model file and each external data file
MAX_ELEMENTS = 1 << 26  # elements in any one tensor (initializer, constant or the input)
MIN_IR_VERSION = 3  # ONNX 1.0
MIN_OPSET = 9  # the oldest default-domain opset whose semantics the lowering follows
MAX_OPSET = onnx.defs.onnx_opset_version()  # the newest this onnx release knows

_A = onnx.AttributeProto
# The QONNX ops bnnc reads (no onnx schema exists for them): inputs, and attribute types.
_QONNX_SCHEMAS = {
    "Quant": (4, {"signed": _A.INT, "narrow": _A.INT, "rounding_mode": _A.STRING}),
    "BipolarQuant": (2, {}),
    "MultiThreshold": (2, {"out_scale": _A.FLOAT, "out_bias": _A.FLOAT, "out_dtype": _A.STRING,
                           "data_layout": _A.STRING}),
}

# ONNX op types are identifiers and domains dotted ones; anything else cannot be an op bnnc knows
# (and could break a one-line message).
_OP_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOMAIN = re.compile(r"[A-Za-z0-9_.]*")

# Element types an initializer may have, and the protobuf field holding them when not raw.
_TYPED_FIELD: dict[int, str] = {
    TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data", TensorProto.FLOAT16: "int32_data",
    TensorProto.INT8: "int32_data", TensorProto.INT16: "int32_data", TensorProto.INT32: "int32_data",
    TensorProto.UINT8: "int32_data", TensorProto.UINT16: "int32_data", TensorProto.BOOL: "int32_data",
    TensorProto.INT64: "int64_data", TensorProto.UINT32: "uint64_data", TensorProto.UINT64: "uint64_data",
}


def load_model(path: str | Path) -> onnx.ModelProto:
    """Read and validate an ONNX file: the model returned is safe to lower."""
    path = Path(path)
    if not path.is_file():
        raise BnncError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise BnncError(f"{path}: the file is empty, not an ONNX model")
    if size > MAX_FILE_BYTES:
        raise BnncError(f"{path}: {size} bytes is over bnnc's limit of {MAX_FILE_BYTES} bytes for a model file")
    try:
        model = onnx.ModelProto.FromString(path.read_bytes())
    except Exception as exc:  # protobuf raises several types for garbage and truncation
        raise BnncError(f"{path}: not a readable ONNX model (truncated or another format): "
                        f"{type(exc).__name__}") from None
    if not model.graph.node:
        raise BnncError(f"{path}: the ONNX graph has no nodes (truncated or not an ONNX model)")
    _check_versions(model, path)
    _check_text(model.graph)
    for tensor in model.graph.initializer:
        _check_tensor(tensor, f"initializer {quote(tensor.name)}", path.parent)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    for index, node in enumerate(model.graph.node):
        _check_node(node, index, path.parent)
        _check_schema(node, node_label(node, index), opset)
    _check_value_infos(model.graph)
    _check_wiring(model.graph)
    return model


def _check_text(graph: onnx.GraphProto) -> None:
    """Names and op types are text: protobuf hands invalid UTF-8 over as bytes."""
    for index, node in enumerate(graph.node):
        fields = [node.op_type, node.domain, node.name, *node.input, *node.output]
        if not all(isinstance(f, str) for f in fields):
            raise BnncError(f"node #{index}: a name or op type is not valid UTF-8 text")
        if not _OP_TYPE.fullmatch(node.op_type) or not _DOMAIN.fullmatch(node.domain):
            raise BnncError(f"node #{index}: op type {quote(node.op_type)} in domain {quote(node.domain)} "
                            f"is not an ONNX op name")
    for info in [*graph.input, *graph.output, *graph.initializer]:
        if not isinstance(info.name, str):
            raise BnncError("a graph input, output or initializer name is not valid UTF-8 text")


def _check_versions(model: onnx.ModelProto, path: Path) -> None:
    if not MIN_IR_VERSION <= model.ir_version <= onnx.IR_VERSION:
        raise BnncError(f"{path}: ONNX IR version {model.ir_version} is not one bnnc reads "
                        f"({MIN_IR_VERSION} to {onnx.IR_VERSION})")
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not default:
        raise BnncError(f"{path}: the model imports no default ONNX opset")
    bad = [v for v in default if not MIN_OPSET <= v <= MAX_OPSET]
    if bad:
        raise BnncError(f"{path}: ONNX opset {bad[0]} is not supported ({MIN_OPSET} to {MAX_OPSET})")


def _element_count(dims, what: str) -> int:
    """The product of declared dimensions, refused before it can size an allocation."""
    if any(d < 0 for d in dims):
        raise BnncError(f"{what}: negative dimension in shape {list(dims)}")
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise BnncError(f"{what}: shape {list(dims)} has {count} elements, over bnnc's limit of "
                        f"{MAX_ELEMENTS} per tensor")
    return count


def _check_tensor(tensor: TensorProto, what: str, folder: Path) -> None:
    """A constant tensor whose type, size and stored bytes agree; its values must be finite."""
    field = _TYPED_FIELD.get(tensor.data_type)
    if field is None:
        name = TensorProto.DataType.Name(tensor.data_type) if tensor.data_type in TensorProto.DataType.values() \
            else str(tensor.data_type)
        raise BnncError(f"{what}: element type {name} is not supported")
    if tensor.HasField("segment"):
        raise BnncError(f"{what}: segmented tensors are not supported")
    count = _element_count(tensor.dims, what)
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    if tensor.data_location == TensorProto.EXTERNAL:
        _read_external(tensor, what, folder, count * itemsize)
    elif tensor.data_location != TensorProto.DEFAULT:
        raise BnncError(f"{what}: unknown data location {tensor.data_location}")
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != count * itemsize:
            raise BnncError(f"{what}: {len(tensor.raw_data)} bytes of data for shape {list(tensor.dims)} "
                            f"({count * itemsize} expected)")
    elif len(getattr(tensor, field)) != count:
        raise BnncError(f"{what}: {len(getattr(tensor, field))} values for shape {list(tensor.dims)} "
                        f"({count} expected)")
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as exc:  # onnx's decoder: anything it cannot read is the file's fault
        raise BnncError(f"{what}: unreadable data ({type(exc).__name__})") from None
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise BnncError(f"{what}: contains NaN or infinity")


def _read_external(tensor: TensorProto, what: str, folder: Path, expected: int) -> None:
    """Move a tensor's external data into it, reading only a regular file inside the model's
    folder and only as many bytes as its shape declares."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location or os.path.isabs(location) or ".." in Path(location).parts:
        raise BnncError(f"{what}: external data location {quote(location)} must be a relative path "
                        f"inside the model's folder")
    root = folder.resolve()
    file = (root / location).resolve()
    if root not in file.parents or not file.is_file():
        raise BnncError(f"{what}: external data file {quote(location)} is not a file inside the model's folder")
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", expected))
    except ValueError:
        raise BnncError(f"{what}: external data offset or length is not a number") from None
    available = file.stat().st_size - offset
    if offset < 0 or length != expected or available < expected:
        raise BnncError(f"{what}: external data in {quote(location)} (offset {offset}, length {length}, "
                        f"{max(available, 0)} bytes available) does not hold the {expected} bytes of "
                        f"shape {list(tensor.dims)}")
    with open(file, "rb") as f:
        f.seek(offset)
        tensor.raw_data = f.read(expected)
    tensor.data_location = TensorProto.DEFAULT
    del tensor.external_data[:]


def _check_node(node: onnx.NodeProto, index: int, folder: Path) -> None:
    label = node_label(node, index)
    for attr in node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise BnncError(f"{label}: attribute {quote(attr.name)} holds a sub-graph; control flow is not supported")
        if attr.type == onnx.AttributeProto.TENSOR:
            _check_tensor(attr.t, f"{label}, attribute {quote(attr.name)}", folder)
        if attr.type == onnx.AttributeProto.TENSORS:
            for t in attr.tensors:
                _check_tensor(t, f"{label}, attribute {quote(attr.name)}", folder)
        if attr.type in (onnx.AttributeProto.STRING, onnx.AttributeProto.STRINGS):
            try:
                [s.decode() for s in [attr.s, *attr.strings]]
            except UnicodeDecodeError:
                raise BnncError(f"{label}: attribute {quote(attr.name)} is not valid UTF-8 text") from None
        if attr.type == onnx.AttributeProto.FLOAT and not math.isfinite(attr.f):
            raise BnncError(f"{label}: attribute {quote(attr.name)} is {attr.f}")
        if attr.type == onnx.AttributeProto.FLOATS and not all(math.isfinite(v) for v in attr.floats):
            raise BnncError(f"{label}: attribute {quote(attr.name)} contains NaN or infinity")


def _check_schema(node: onnx.NodeProto, label: str, opset: int) -> None:
    """Input and output counts and attribute names and types as the op's schema states them, so
    that the lowering can read what it expects. Ops without a schema are left to the lowering,
    which names them as unsupported."""
    if node.domain in QONNX_DOMAINS:
        if node.op_type not in _QONNX_SCHEMAS:
            raise BnncError(f"{label}: op {node.op_type} (domain {quote(node.domain)}) is not supported by bnnc")
        inputs, attributes = _QONNX_SCHEMAS[node.op_type]
        low, high, outputs = inputs, inputs, (1, 1)
        required: Sequence[str] = ()
    elif node.domain in ("", "ai.onnx"):
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, "")
        except onnx.defs.SchemaError:
            return
        low, high, outputs = schema.min_input, schema.max_input, (schema.min_output, schema.max_output)
        # onnx's stub declares OpSchema.AttrType a plain class; at runtime it is an IntEnum
        attributes = {name: int(a.type) for name, a in schema.attributes.items()}  # type: ignore[call-overload]
        required = [name for name, a in schema.attributes.items() if a.required]
    else:
        return
    if not low <= len(node.input) <= high:
        raise BnncError(f"{label}: {len(node.input)} inputs, but {node.op_type} takes "
                        f"{low if low == high else f'{low} to {high}'}")
    if not outputs[0] <= len(node.output) <= outputs[1]:
        raise BnncError(f"{label}: {len(node.output)} outputs, but {node.op_type} has "
                        f"{outputs[0]} to {outputs[1]}")
    for attr in node.attribute:
        if attr.name not in attributes:
            if node.domain in QONNX_DOMAINS:
                continue  # QONNX tools add annotations of their own
            raise BnncError(f"{label}: {node.op_type} has no attribute {quote(attr.name)}")
        if attr.type != attributes[attr.name]:
            raise BnncError(f"{label}: attribute {quote(attr.name)} is {_type_name(attr.type)}, "
                            f"{node.op_type} expects {_type_name(attributes[attr.name])}")
    missing = [name for name in required if name not in {a.name for a in node.attribute}]
    if missing:
        raise BnncError(f"{label}: required attribute {quote(missing[0])} is missing")


def _type_name(attr_type: int) -> str:
    return _A.AttributeType.Name(attr_type) if attr_type in _A.AttributeType.values() else str(attr_type)


def _check_value_infos(graph: onnx.GraphProto) -> None:
    """Declared shapes of inputs and outputs: a dimension can size the simulated input."""
    for info in list(graph.input) + list(graph.output):
        tensor_type = info.type.tensor_type
        dims = [d.dim_value for d in tensor_type.shape.dim if d.HasField("dim_value")]
        _element_count(dims, f"tensor {quote(info.name)}")


def _check_wiring(graph: onnx.GraphProto) -> None:
    """Every name a node reads is defined before it (ONNX requires topological order, which
    also rules out cycles), and defined once."""
    producer = {}
    for index, node in enumerate(graph.node):
        for out in node.output:
            if out and out in producer:
                raise BnncError(f"{node_label(node, index)}: output {quote(out)} is also computed by an earlier node")
            if out:
                producer[out] = index
    sources = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    defined = set(sources)
    for index, node in enumerate(graph.node):
        label = node_label(node, index)
        for name in node.input:
            if not name or name in defined:
                continue
            if producer.get(name, -1) >= index:
                raise BnncError(f"{label}: reads {quote(name)} before it is computed (the graph has a "
                                f"cycle or is not in topological order)")
            raise BnncError(f"{label}: reads {quote(name)}, which no node, input or initializer defines")
        if any(o in sources for o in node.output):
            raise BnncError(f"{label}: overwrites an input or initializer")
        defined.update(o for o in node.output if o)
    for out in graph.output:
        if out.name not in defined:
            raise BnncError(f"output {quote(out.name)} is not computed by any node")
