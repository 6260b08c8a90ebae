"""Residual BNNs the way the papers write them, in plain torch (small, for 8x8 digits-sized
inputs): Bi-Real Net (full-precision stem, binary 3x3 convs with real shortcuts around each,
an average-pool shortcut where the map shrinks, global average pool, full-precision classifier)
and ReActNet (RSign, RPReLU, learnable biases), plus the smaller shapes around them: a
Hardtanh + Sign MLP, conv nets with a GAP or AveragePool head, layers with bias.

Binary weights are written as the papers' code writes them: w + (s * sign(w) - w).detach(), with
s the mean |w| per output channel, so an exporter leaves +-s only up to float32 rounding; activations
use torch.sign (Sign(0) = 0) or the polynomial ApproxSign STE of Bi-Real Net, whose backward-only
branch exports as extra nodes. Models are randomly initialised; BatchNorm statistics come from a
few batches so that every channel is used.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def approx_sign(x):
    """Bi-Real Net's ApproxSign: sign(x) forward, a piecewise polynomial's gradient backward."""
    out_forward = torch.sign(x)
    mask1, mask2, mask3 = (x < -1).float(), (x < 0).float(), (x < 1).float()
    out1 = -1 * mask1 + (x * x + 2 * x) * (1 - mask1)
    out2 = out1 * mask2 + (-x * x + 2 * x) * (1 - mask2)
    out3 = out2 * mask3 + 1 * (1 - mask3)
    return out_forward.detach() - out3.detach() + out3


class BinaryConv(nn.Conv2d):
    """XNOR-Net/Bi-Real binary weights: sign(w) times the mean |w| of each output channel."""

    def forward(self, x):
        w = self.weight
        s = w.abs().mean(dim=(1, 2, 3), keepdim=True)
        wb = w + (s * torch.sign(w) - w).detach()
        return F.conv2d(x, wb, None, self.stride, self.padding)


class BiRealBlock(nn.Module):
    """x + BN(binconv(sign(x))); with stride 2 the shortcut is AvgPool 2x2 of x."""

    def __init__(self, channels: int, stride: int = 1, approx: bool = False):
        super().__init__()
        self.conv = BinaryConv(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.stride, self.approx = stride, approx

    def forward(self, x):
        s = approx_sign(x) if self.approx else torch.sign(x)
        shortcut = F.avg_pool2d(x, 2) if self.stride == 2 else x
        return self.bn(self.conv(s)) + shortcut


class LearnableBias(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return x + self.bias.expand_as(x)


class RPReLU(nn.Module):
    """ReActNet's RPReLU: PReLU(x - gamma) + zeta, all per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift_in, self.shift_out = LearnableBias(channels), LearnableBias(channels)
        self.prelu = nn.PReLU(channels, init=0.25)

    def forward(self, x):
        return self.shift_out(self.prelu(self.shift_in(x)))


class ReActBlock(nn.Module):
    """RSign (sign(x - beta)) -> binary conv -> BN -> + x -> RPReLU."""

    def __init__(self, channels: int, approx: bool = False):
        super().__init__()
        self.rsign_bias = LearnableBias(channels)
        self.conv = BinaryConv(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = RPReLU(channels)
        self.approx = approx  # ApproxSign's gradient, so that training moves the RSign thresholds

    def forward(self, x):
        shifted = self.rsign_bias(x)
        return self.act(self.bn(self.conv(approx_sign(shifted) if self.approx else torch.sign(shifted))) + x)


class ResidualNet(nn.Module):
    """Full-precision stem conv + BN, residual blocks, GAP, full-precision classifier."""

    def __init__(self, blocks: list[nn.Module], channels: int, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(channels)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        h = self.blocks(self.stem_bn(self.stem(x)))
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


def bireal_net(channels: int = 8, approx: bool = False) -> ResidualNet:
    return ResidualNet([BiRealBlock(channels, approx=approx), BiRealBlock(channels, stride=2, approx=approx),
                        BiRealBlock(channels, approx=approx)], channels)


def reactnet(channels: int = 8, approx: bool = False) -> ResidualNet:
    return ResidualNet([ReActBlock(channels, approx), ReActBlock(channels, approx)], channels)


class HardtanhSignMLP(nn.Module):
    """BinaryConnect style: Hardtanh then Sign between binary dense layers with bias."""

    def __init__(self, features: int = 64, hidden: int = 32, classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        w1 = self.fc1.weight
        h = F.linear(torch.sign(x), w1 + (torch.sign(w1) - w1).detach(), self.fc1.bias)
        h = torch.sign(F.hardtanh(self.bn1(h)))
        return self.fc2(h)


class PoolHeadNet(nn.Module):
    """A full-precision conv with bias, a binary conv, then a head: "gap" (GlobalAveragePool),
    "mean" (ReduceMean) or "avgpool" (AveragePool 2x2 and a sign before the dense layer)."""

    def __init__(self, head: str, channels: int = 8, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = BinaryConv(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.head_kind = head
        self.fc = nn.Linear(channels if head in ("gap", "mean") else channels * 16, classes)

    def forward(self, x):
        h = torch.sign(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        if self.head_kind == "gap":
            h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        elif self.head_kind == "mean":  # exports as ReduceMean
            h = h.mean(dim=(2, 3))
        else:  # AveragePool in front of a sign
            h = torch.sign(F.avg_pool2d(h, 2)).flatten(1)
        return self.fc(h)


def calibrated(model: nn.Module, inputs: torch.Tensor, seed: int = 0, grid: bool = True) -> nn.Module:
    """Random weights (seeded), BatchNorm statistics from the given inputs, eval mode. With
    `grid`, full-precision weights are multiples of 1/64 within 8 bits, as an 8-bit weight
    quantizer leaves them (so bnnc takes them exactly); else they are arbitrary floats."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.5)
            if grid and not isinstance(m, BinaryConv):  # what an 8-bit weight quantizer would leave
                with torch.no_grad():
                    m.weight.copy_(torch.clamp(torch.round(m.weight * 64), -127, 127) / 64)
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.2)
        if isinstance(m, LearnableBias):
            nn.init.normal_(m.bias, 0.0, 0.2)
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.momentum = None  # a plain average over the batches
    with torch.no_grad():
        for batch in inputs.split(64):
            model(batch)
    return model.eval()


def export(model: nn.Module, path, example: torch.Tensor, dynamo: bool = False) -> str:
    """ONNX through either exporter. The TorchScript one runs without constant folding: with it,
    it fuses each BatchNorm into the conv before it, and the float32 products are no longer a
    scale times 8-bit integers (such models need --quantize-weights)."""
    extra = {} if dynamo else {"do_constant_folding": False}
    torch.onnx.export(model, (example[:1],), str(path), dynamo=dynamo, opset_version=18,
                      input_names=["x"], output_names=["y"], **extra)
    return str(path)


class BrevitasBiReal(nn.Module):
    """Bi-Real Net as Brevitas writes it: an 8-bit input quantizer, an 8-bit-weight stem and
    classifier (Int8WeightPerTensorFloat), binary block convs (SignedBinaryWeightPerTensorConst)
    behind a binary activation quantizer (SignedBinaryActPerTensorConst, Sign(0) = +1), real
    shortcuts and BatchNorm in float, exported with export_qonnx."""

    def __init__(self, channels: int = 8, classes: int = 10):
        super().__init__()
        from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
        from brevitas.quant import (
            Int8WeightPerTensorFloat,
            SignedBinaryActPerTensorConst,
            SignedBinaryWeightPerTensorConst,
            Uint8ActPerTensorFloatMaxInit,
        )

        self.quant_in = QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, max_val=1.0)
        self.stem = QuantConv2d(1, channels, 3, padding=1, bias=False, weight_quant=Int8WeightPerTensorFloat)
        self.stem_bn = nn.BatchNorm2d(channels)
        self.signs = nn.ModuleList(QuantIdentity(act_quant=SignedBinaryActPerTensorConst) for _ in range(2))
        self.convs = nn.ModuleList(QuantConv2d(channels, channels, 3, padding=1, bias=False,
                                               weight_quant=SignedBinaryWeightPerTensorConst) for _ in range(2))
        self.bns = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(2))
        self.head = QuantLinear(channels, classes, bias=True, weight_quant=Int8WeightPerTensorFloat)

    def forward(self, x):
        h = self.stem_bn(self.stem(self.quant_in(x)))
        for sign, conv, bn in zip(self.signs, self.convs, self.bns):
            h = bn(conv(sign(h))) + h
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


def export_qonnx(model: nn.Module, path, example: torch.Tensor, dynamo: bool = False) -> str:
    from brevitas.export import export_qonnx as export

    export(model.eval(), input_t=example[:1], export_path=str(path), dynamo=dynamo)
    return str(path)
