"""A depthwise-separable binary conv net from Brevitas (same conventions as conv_exporters).

QuantIdentity(int8) -> QuantConv2d 3x3 (pad 1) -> BN -> bipolar
  -> depthwise QuantConv2d 3x3 (groups = channels, pad 1: zero padding of a bipolar map)
  -> BN -> bipolar -> pointwise QuantConv2d 1x1 -> BN -> bipolar -> MaxPool 2
  -> Flatten -> the FINN FC tail (binary dense layers, TensorNorm).
"""

from __future__ import annotations

import torch
from torch import nn

from tests.models.conv_exporters import _export_qonnx
from tests.models.exporters import _rng, brevitas_input_quant, build_brevitas_mlp, randomize_bn

__all__ = ["build_separable_cnv", "separable_cnv"]


def build_separable_cnv(channels=8, out_channels=16, in_shape=(3, 8, 8), dense=(32, 10), seed=0, ties=True):
    from brevitas.nn import QuantConv2d, QuantIdentity
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

    wq = {"weight_quant": SignedBinaryWeightPerTensorConst}
    gen = _rng(seed + 1)
    c, h, w = in_shape

    def block(conv, fan_in, first=False):
        bn = nn.BatchNorm2d(conv.out_channels, eps=1e-4)
        randomize_bn(bn, gen, fan_in, 0.1, zero_beta=first, ties=ties)
        return [conv, bn, QuantIdentity(act_quant=SignedBinaryActPerTensorConst)]

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = [brevitas_input_quant("int8")]
        layers += block(QuantConv2d(c, channels, 3, padding=1, bias=False, **wq), c * 9, first=True)
        layers += block(QuantConv2d(channels, channels, 3, padding=1, groups=channels, bias=False, **wq), 9)
        layers += block(QuantConv2d(channels, out_channels, 1, bias=False, **wq), channels)
        layers.append(nn.MaxPool2d(2))
    tail = build_brevitas_mlp(dense, out_channels * (h // 2) * (w // 2), None, "bipolar", "tensornorm", seed + 1000,
                              ties=ties)
    return nn.Sequential(*layers, nn.Flatten(), *tail[1:]).eval()


def separable_cnv(path, dynamo=False, seed=0, **kw) -> str:
    model = build_separable_cnv(seed=seed, **kw)
    return _export_qonnx(model, path, kw.get("in_shape", (3, 8, 8)), dynamo)
