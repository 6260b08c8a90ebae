"""Mutations of a serialized ONNX model: structural ones on the protobuf (nodes, attributes,
initializers, shapes, types, versions, external data) and byte-wise ones on the file.

Each mutation takes a numpy Generator, so a case is reproducible from its seed alone.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto

HUGE = (2 ** 31, 2 ** 40, 2 ** 62, 10 ** 9, 65536)
INTS = (-(2 ** 63), -(2 ** 31), -7, -2, -1, 0, 1, 2, 3, 5, 64, 2 ** 31 - 1, 2 ** 63 - 1)
FLOATS = (float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-45, 1e38, -1.0, 0.5, 3.0)
OPS = ("Sign", "Gemm", "MatMul", "Add", "Mul", "Sub", "Div", "Reshape", "Flatten", "Conv", "MaxPool",
       "BatchNormalization", "Transpose", "Where", "GreaterOrEqual", "Identity", "Relu", "Pad",
       "Squeeze", "Unsqueeze", "Softmax", "ArgMax", "Quant", "BipolarQuant", "MultiThreshold", "If")
DTYPES = tuple(v for v in TensorProto.DataType.values())


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _names(model):
    g = model.graph
    return ([i.name for i in g.input] + [t.name for t in g.initializer]
            + [o for n in g.node for o in n.output] + ["", "nope", "x" * 300])


def _node(rng, model):
    return model.graph.node[int(rng.integers(len(model.graph.node)))] if model.graph.node else None


def drop_node(rng, model):
    if model.graph.node:
        del model.graph.node[int(rng.integers(len(model.graph.node)))]


def duplicate_node(rng, model):
    if model.graph.node:
        i = int(rng.integers(len(model.graph.node)))
        model.graph.node.insert(int(rng.integers(len(model.graph.node) + 1)), model.graph.node[i])


def swap_nodes(rng, model):
    nodes = model.graph.node
    if len(nodes) > 1:
        i, j = rng.choice(len(nodes), 2, replace=False)
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[int(i)])
        b.CopyFrom(nodes[int(j)])
        nodes[int(i)].CopyFrom(b)
        nodes[int(j)].CopyFrom(a)


def rewire(rng, model):
    node = _node(rng, model)
    if node is None:
        return
    names = _names(model)
    if node.input and rng.random() < 0.7:
        node.input[int(rng.integers(len(node.input)))] = _pick(rng, names)
    elif node.output:
        node.output[int(rng.integers(len(node.output)))] = _pick(rng, names)


def add_or_drop_input(rng, model):
    node = _node(rng, model)
    if node is None:
        return
    if node.input and rng.random() < 0.5:
        del node.input[-1]
    else:
        node.input.append(_pick(rng, _names(model)))


def change_op(rng, model):
    node = _node(rng, model)
    if node is not None:
        node.op_type = _pick(rng, OPS)
        if rng.random() < 0.3:
            node.domain = _pick(rng, ("", "ai.onnx", "qonnx.custom_op.general", "com.evil"))


def change_attribute(rng, model):
    node = _node(rng, model)
    if node is None:
        return
    if not node.attribute or rng.random() < 0.25:
        name = _pick(rng, ("axis", "perm", "pads", "strides", "kernel_shape", "transB", "alpha", "epsilon",
                           "group", "dilations", "signed", "narrow", "rounding_mode", "out_scale", "mode"))
        kind = _pick(rng, ("int", "ints", "float", "string"))
        value = {"int": lambda: int(_pick(rng, INTS)), "ints": lambda: [int(_pick(rng, INTS)) for _ in range(4)],
                 "float": lambda: float(_pick(rng, FLOATS)), "string": lambda: "WHAT"}[kind]()
        node.attribute.append(onnx.helper.make_attribute(name, value))
        return
    attr = node.attribute[int(rng.integers(len(node.attribute)))]
    if rng.random() < 0.2:
        node.attribute.remove(attr)
    elif attr.type == AttributeProto.INT:
        attr.i = int(_pick(rng, INTS))
    elif attr.type == AttributeProto.INTS and attr.ints:
        attr.ints[int(rng.integers(len(attr.ints)))] = int(_pick(rng, INTS))
    elif attr.type == AttributeProto.INTS:
        attr.ints.append(int(_pick(rng, INTS)))
    elif attr.type == AttributeProto.FLOAT:
        attr.f = float(_pick(rng, FLOATS))
    elif attr.type == AttributeProto.STRING:
        attr.s = _pick(rng, (b"", b"NHWC", b"FLOOR", b"reflect", b"\xff\xfe", b"SAME_UPPER"))
    elif attr.type == AttributeProto.TENSOR:
        _mutate_tensor(rng, attr.t)
    else:
        attr.type = int(rng.integers(0, 15))


def _initializer(rng, model):
    inits = model.graph.initializer
    return inits[int(rng.integers(len(inits)))] if inits else None


def _mutate_tensor(rng, t):
    choice = int(rng.integers(7))
    if choice == 0 and t.dims:  # one dimension changed, data kept
        t.dims[int(rng.integers(len(t.dims)))] = int(_pick(rng, (0, 1, 2, 3, -1) + HUGE))
    elif choice == 1:  # a dimension added or dropped
        if t.dims and rng.random() < 0.5:
            del t.dims[int(rng.integers(len(t.dims)))]
        else:
            t.dims.insert(int(rng.integers(len(t.dims) + 1)), int(_pick(rng, (1, 1, 2))))
    elif choice == 2:  # huge and empty
        t.dims[:] = [int(_pick(rng, HUGE)), 10]
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.ClearField("int64_data")
    elif choice == 3:
        t.data_type = int(_pick(rng, DTYPES))
    else:  # contents: special values, random values, or a scaled copy
        try:
            a = onnx.numpy_helper.to_array(t).copy()
        except Exception:
            return
        if a.size == 0:
            return
        flat = a.reshape(-1)
        if a.dtype.kind == "f":
            if choice == 4:
                flat[int(rng.integers(flat.size))] = _pick(rng, FLOATS)
            elif choice == 5:
                flat[:] = rng.choice([-1.0, 1.0, 0.5, 0.0], flat.size)
            else:
                flat *= float(_pick(rng, (2.0, -1.0, 1e30, 0.0, 3.0)))
        elif a.dtype.kind in "iu":
            info = np.iinfo(a.dtype)
            flat[int(rng.integers(flat.size))] = min(max(int(_pick(rng, INTS)), info.min), info.max)
        new = onnx.numpy_helper.from_array(a, t.name)
        t.CopyFrom(new)


def mutate_initializer(rng, model):
    t = _initializer(rng, model)
    if t is not None:
        _mutate_tensor(rng, t)


def external_data(rng, model):
    """Move an initializer's bytes to a side file: returns the files to write next to the model."""
    t = _initializer(rng, model)
    if t is None:
        return
    data = t.raw_data or onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t)).raw_data
    location = _pick(rng, ("weights.bin", "weights.bin", "sub/../weights.bin", "../weights.bin",
                           "/etc/passwd", "/tmp/weights.bin", "missing.bin", "."))
    offset = int(_pick(rng, (0, 0, 0, 4, -5, 2 ** 40)))
    length = _pick(rng, (None, len(data), len(data) + 8, 0, 2 ** 40))
    files = {"weights.bin": data[: len(data) - int(rng.integers(0, 2)) * 3]}
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        t.external_data.add(key=k, value=v)
    return files


def change_io(rng, model):
    g = model.graph
    info = _pick(rng, list(g.input) + list(g.output))
    tt = info.type.tensor_type
    choice = int(rng.integers(4))
    if choice == 0 and tt.shape.dim:
        d = tt.shape.dim[int(rng.integers(len(tt.shape.dim)))]
        d.dim_value = int(_pick(rng, (0, 1, 2, 7) + HUGE))
    elif choice == 1:
        tt.elem_type = int(_pick(rng, DTYPES))
    elif choice == 2 and tt.shape.dim:
        del tt.shape.dim[-1]
    else:
        info.name = _pick(rng, _names(model))


def change_versions(rng, model):
    if rng.random() < 0.6 and model.opset_import:
        model.opset_import[0].version = int(_pick(rng, (1, 6, 7, 9, 11, 13, 17, 18, 21, 23, 28, 99, -1)))
    else:
        model.ir_version = int(_pick(rng, (0, 1, 3, 7, 8, 10, 11, 13, 99, -5)))


STRUCTURAL = (drop_node, duplicate_node, swap_nodes, rewire, add_or_drop_input, change_op, change_attribute,
              change_attribute, mutate_initializer, mutate_initializer, mutate_initializer, external_data,
              change_io, change_versions)


def truncate(rng, data: bytes) -> bytes:
    return data[: int(rng.integers(len(data)))]


def flip_bytes(rng, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        b[int(rng.integers(len(b)))] = int(rng.integers(256))
    return bytes(b)


def mutate(rng, seed: bytes) -> tuple[bytes, dict[str, bytes], list[str]]:
    """(model bytes, side files by name, the mutations applied) for one case."""
    if rng.random() < 0.2:
        how = _pick(rng, (truncate, flip_bytes, flip_bytes))
        return how(rng, seed), {}, [how.__name__]
    model = onnx.ModelProto.FromString(seed)
    applied, files = [], {}
    for _ in range(int(rng.integers(1, 4))):
        how = _pick(rng, STRUCTURAL)
        try:
            files.update(how(rng, model) or {})
        except Exception:  # the mutation does not apply to what earlier ones left: skip it
            continue
        applied.append(how.__name__)
    return model.SerializeToString(), files, applied
