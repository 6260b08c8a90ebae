"""Lowering of the ops that only move values around -- Identity/Dropout, Shape, Reshape, Flatten,
(Un)Squeeze, Transpose (with tf2onnx's NHWC views) -- and the ones at the ends of a network
(MaxPool, Softmax, ArgMax)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..ir.ops import ArgMax, Pool, Reshape, Softmax, Transpose
from ..ir.types import Real

if TYPE_CHECKING:
    from .onnx import _Lowering


@dataclass(frozen=True)
class _NHWC:
    """An ONNX tensor in N x H x W x C order that is IR value `x` (C x H x W) transposed.

    tf2onnx wraps every conv in NHWC<->NCHW transposes and applies BatchNorm as Mul/Add along
    the last axis; keeping the view lets those transposes cancel instead of reaching hardware.
    """
    x: str


def _identity(lw: _Lowering) -> None:
    lw.bind(lw.values[lw.node.input[0]])


def _shape(lw: _Lowering) -> None:
    # A shape read from a dynamic tensor (e.g. x.view(x.size(0), -1)): batch is taken as 1, which
    # is exactly how the reshape lowering below reads a leading batch dimension.
    lw.consts[lw.node.output[0]] = np.array((1,) + lw.type_of(lw.value(0)).shape, dtype=np.int64)


def _reshape_to(lw: _Lowering, target: list[int]) -> None:
    x = lw.value(0)
    shape = lw.type_of(x).shape
    size = int(np.prod(shape))
    dims = [shape[i - 1] if (d == 0 and 0 < i <= len(shape)) else d for i, d in enumerate(target)]
    if not dims or dims[0] not in (1, -1, 0):
        raise lw.fail(f"reshape to {target} must keep the batch as its first dimension")
    rest = [int(d) for d in dims[1:]]
    if rest.count(-1) > 1:
        raise lw.fail(f"reshape to {target} has more than one unknown dimension")
    if -1 in rest:
        known = int(np.prod([d for d in rest if d != -1])) or 1
        rest[rest.index(-1)] = size // known
    if int(np.prod(rest)) != size:
        raise lw.fail(f"cannot reshape a tensor of shape {shape} per sample to {target}")
    lw.bind(x if tuple(rest) == shape else lw.emit(Reshape, [x], shape=tuple(rest)))


def _reshape(lw: _Lowering) -> None:
    _reshape_to(lw, lw.const_ints(1, "the target shape"))


def _flatten(lw: _Lowering) -> None:
    axis = lw.attr("axis", 1)
    if axis != 1:
        raise lw.fail(f"Flatten with axis={axis} would mix samples; only axis=1 is supported")
    _reshape_to(lw, [1, -1])


def _squeeze_like(lw: _Lowering) -> None:
    shape = lw.type_of(lw.value(0)).shape
    axes = lw.attr("axes")
    if axes is None and len(lw.node.input) > 1:
        axes = lw.const_ints(1, "the axes")
    full = [1] + list(shape)
    rank_out = len(full) + (len(axes or []) if lw.node.op_type == "Unsqueeze" else -len(axes or []))
    axes = [a % (rank_out if lw.node.op_type == "Unsqueeze" else len(full)) for a in (axes or [])]
    if 0 in axes:
        raise lw.fail("squeezing or unsqueezing the batch axis is not supported")
    if lw.node.op_type == "Squeeze":
        new = [d for i, d in enumerate(full) if i not in axes] if axes else [1] + [d for d in shape if d != 1]
    else:
        new = full[:]
        for a in sorted(axes):
            new.insert(a, 1)
    _reshape_to(lw, new)


def _maxpool(lw: _Lowering) -> None:
    x = lw.value(0)
    if any(lw.window_attr("pads", [0, 0, 0, 0], 0)) or lw.attr("ceil_mode", 0) \
            or any(d != 1 for d in lw.window_attr("dilations", [1, 1], 1)):
        raise lw.fail("MaxPool with padding, ceil_mode or dilation is not supported")
    if len(lw.node.output) > 1 and lw.node.output[1]:
        raise lw.fail("MaxPool's indices output is not supported")
    kernel = tuple(lw.window_attr("kernel_shape", [], 1))
    stride = tuple(lw.window_attr("strides", list(kernel), 1))
    channels = lw.type_of(x).shape[0]
    lw.bind(lw.emit(Pool, [x], kernel=kernel, stride=stride, modes=np.ones(channels, dtype=np.int8)))


def _transpose(lw: _Lowering) -> None:
    x = lw.value(0)
    rank = len(lw.type_of(x).shape)
    onnx_perm = list(lw.attr("perm", list(range(rank, -1, -1))))
    if onnx_perm[0] != 0:
        raise lw.fail(f"transposing the batch axis away (perm {onnx_perm}) is not supported")
    perm = tuple(p - 1 for p in onnx_perm[1:])
    if perm == (1, 2, 0) and not isinstance(lw.type_of(x).elem, Real):
        return lw.bind(_NHWC(x))  # a layout view; materialised only if something needs it
    lw.bind(x if perm == tuple(range(rank)) else lw.emit(Transpose, [x], perm=perm))


def _softmax(lw: _Lowering) -> None:
    x = lw.value(0)
    if len(lw.type_of(x).shape) != 1 or lw.attr("axis", -1) not in (1, -1):
        raise lw.fail("Softmax is supported over the class vector only")
    lw.bind(lw.emit(Softmax, [x]))


def _argmax(lw: _Lowering) -> None:
    x = lw.value(0)
    shape = lw.type_of(x).shape
    if len(shape) != 1 or lw.attr("axis", 0) not in (1, -1) or lw.attr("select_last_index", 0):
        raise lw.fail("ArgMax is supported over the class axis of a vector (axis=1), first index")
    lw.bind(lw.emit(ArgMax, [x]))
