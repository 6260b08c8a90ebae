"""numpy implementations of the QONNX custom ops, for onnx.reference.

They serve twice: to fold constant sub-graphs (e.g. BipolarQuant on float weights) and to run
the user's original model for `bnnc verify`. They follow the QONNX reference semantics,
including float32 arithmetic and the order scale -> shift -> clamp -> round.
"""
from __future__ import annotations

import numpy as np
from onnx.reference.op_run import OpRun

QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")

ROUNDING = {"ROUND": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
            "ROUND_TO_ZERO": lambda v: np.sign(v) * np.floor(np.abs(v))}


def int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)


def quant_levels(x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND"):
    """QONNX Quant's integer part: round(clip(x / scale + zeropt)), in float32 as it defines it."""
    x = np.asarray(x, dtype=np.float32)
    scale, zeropt = np.asarray(scale, dtype=np.float32), np.asarray(zeropt, dtype=np.float32)
    y = x / scale + zeropt
    bits = int(np.asarray(bitwidth).item())
    if bits == 1 and signed:  # QONNX treats a signed 1-bit Quant as bipolar
        return np.where(y >= 0, np.float32(1), np.float32(-1))
    lo, hi = int_range(bits, bool(signed), bool(narrow))
    y = np.clip(y, np.float32(lo), np.float32(hi))
    mode = rounding_mode.decode() if isinstance(rounding_mode, bytes) else rounding_mode
    return ROUNDING[mode.upper()](y)


def quant(x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND"):
    y = quant_levels(x, scale, zeropt, bitwidth, signed, narrow, rounding_mode)
    return ((y - np.float32(zeropt)) * np.float32(scale)).astype(np.float32)


def bipolar_quant(x, scale):
    x = np.asarray(x, dtype=np.float32)
    return (np.where(x >= 0, np.float32(1), np.float32(-1)) * np.float32(scale)).astype(np.float32)


def multithreshold(x, thresholds, out_scale=1.0, out_bias=0.0, data_layout="NCHW"):
    x = np.asarray(x)
    layout = data_layout.decode() if isinstance(data_layout, bytes) else data_layout
    channel_axis = x.ndim - 1 if (layout == "NHWC" and x.ndim == 4) else 1
    moved = np.moveaxis(x, channel_axis, -1)[..., None]
    level = np.count_nonzero(moved >= thresholds, axis=-1)
    level = np.moveaxis(level, -1, channel_axis)
    return (np.float32(out_scale) * level + np.float32(out_bias)).astype(np.float32)


class Quant(OpRun):
    op_domain = "qonnx.custom_op.general"

    def _run(self, x, scale, zeropt, bitwidth, signed=1, narrow=0, rounding_mode="ROUND"):
        return (quant(x, scale, zeropt, bitwidth, signed, narrow, rounding_mode),)


class BipolarQuant(OpRun):
    op_domain = "qonnx.custom_op.general"

    def _run(self, x, scale):
        return (bipolar_quant(x, scale),)


class MultiThreshold(OpRun):
    op_domain = "qonnx.custom_op.general"

    def _run(self, x, thresholds, out_scale=1.0, out_bias=0.0, out_dtype="", data_layout="NCHW"):
        return (multithreshold(x, thresholds, out_scale, out_bias, data_layout),)


def custom_ops(domain: str) -> list[type]:
    """The op classes registered for one QONNX domain (onnx.reference matches on op_domain)."""
    return [type(cls.__name__, (cls,), {"op_domain": domain}) for cls in (Quant, BipolarQuant, MultiThreshold)]


ALL_CUSTOM_OPS = [cls for domain in QONNX_DOMAINS for cls in custom_ops(domain)]
