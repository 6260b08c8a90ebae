"""A plain numpy model of a hardware Design, in the hardware's own stream orders.

Not a second meaning of the IR: it checks that lowering to a Design (weight orders, windows,
padding, flatten permutations, pool modes) keeps the interpreter's answers, before any RTL or
C++ is involved. Tests compare it with bnnc.interp; backends are compared with interp too.
"""
from __future__ import annotations

import numpy as np
from bnnc.backends.hardware import Layer, PoolLayer


def _post(layer: Layer, acc: np.ndarray) -> np.ndarray:
    if layer.thresholds is not None:
        level = (acc[..., None] >= layer.thresholds).sum(-1)
        return np.take_along_axis(np.broadcast_to(layer.values, acc.shape[:-1] + layer.values.shape),
                                  level[..., None], -1)[..., 0]
    if layer.mult is not None:
        return acc * layer.mult + layer.bias
    return acc


def _conv(layer: Layer, x: np.ndarray) -> np.ndarray:
    """x: (N, H, W, C) -> (N, OH, OW, O); padded positions hold pad_value (0 adds nothing)."""
    win = layer.window
    top, left, bottom, right = win.pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=win.pad_value)
    kh, kw = win.kernel
    oh, ow = win.out_hw
    out = np.zeros((len(x), oh, ow, layer.out_count), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * win.stride[0]:i * win.stride[0] + kh, j * win.stride[1]:j * win.stride[1] + kw, :]
            out[:, i, j] = _post(layer, patch.reshape(len(x), -1) @ layer.weights.T.astype(np.int64))
    return out


def _pool(layer: PoolLayer, x: np.ndarray) -> np.ndarray:
    c, oh, ow = layer.out_shape
    kh, kw = layer.kernel
    out = np.zeros((len(x), oh, ow, c), dtype=np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * layer.stride[0]:i * layer.stride[0] + kh, j * layer.stride[1]:j * layer.stride[1] + kw, :]
            out[:, i, j] = np.where(layer.modes > 0, patch.max(axis=(1, 2)), patch.min(axis=(1, 2)))
    return out


def run_design(design, codes: np.ndarray) -> np.ndarray:
    """Serialized input values (N, in_count) -> output values (N, out_count)."""
    x = codes
    if design.in_order == "hwc":
        c, h, w = design.in_shape
        x = codes.reshape(len(codes), h, w, c)
    for layer in design.layers:
        if isinstance(layer, PoolLayer):
            x = _pool(layer, x)
        elif layer.window is not None:
            x = _conv(layer, x)
        else:
            x = _post(layer, x.reshape(len(x), -1) @ layer.weights.T.astype(np.int64))
    x = x.reshape(len(x), -1)
    return x.argmax(axis=1)[:, None] if design.argmax else x
