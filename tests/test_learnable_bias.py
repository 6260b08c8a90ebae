"""ReActNet's learnable per-channel shift written as its reference code writes it,
`x + self.bias.expand_as(x)`: the TorchScript exporter keeps an Expand node, the dynamo exporter
folds the expansion into a full-size constant; either is still one value per channel and must fold
exactly like plain broadcasting."""
from __future__ import annotations

import bnnc
import numpy as np
import onnx
import pytest
import torch
from torch import nn


class LearnableBias(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(1, channels, 1, 1) * 2)

    def forward(self, x):
        return x + self.bias.expand_as(x)


class SignConvNet(nn.Module):
    """Sign(x) -> binary conv -> learnable bias -> Sign -> binary dense."""

    def __init__(self, seed: int, varying: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv_w = torch.sign(torch.randn(4, 1, 3, 3, generator=g))
        self.dense_w = torch.sign(torch.randn(10, 4 * 4 * 4, generator=g))
        self.shift = LearnableBias(4)
        self.varying = varying
        with torch.no_grad():
            self.shift.bias.copy_(torch.randint(-3, 4, (1, 4, 1, 1), generator=g).float() + 0.5)

    def forward(self, x):
        h = nn.functional.conv2d(torch.sign(x), self.conv_w)
        h = self.shift(h)
        if self.varying:  # a constant that really differs within a channel
            h = h + torch.arange(16.0).reshape(1, 1, 4, 4)
        return nn.functional.linear(torch.sign(h).flatten(1), self.dense_w)


def export(path, model, dynamo: bool) -> str:
    torch.onnx.export(model, (torch.zeros(1, 1, 6, 6),), str(path), dynamo=dynamo, opset_version=18)
    return str(path)


@pytest.mark.parametrize("dynamo", [False, True])
def test_expand_as_bias_folds_exactly(tmp_path, dynamo):
    path = export(tmp_path / "m.onnx", SignConvNet(seed=1), dynamo)
    shapes = [tuple(t.dims) for t in onnx.load(path).graph.initializer]
    assert ((1, 4, 4, 4) in shapes) == dynamo  # the dynamo exporter materialised the expansion
    x = np.random.default_rng(0).integers(-2, 3, (64, 1, 6, 6)).astype(np.float32)
    check = bnnc.verify(path, x, backends=())
    assert check.ok and check.rows[0].max_error == 0.0


def test_a_constant_that_varies_within_a_channel_is_refused_by_name(tmp_path):
    path = export(tmp_path / "m.onnx", SignConvNet(seed=1, varying=True), dynamo=True)
    with pytest.raises(bnnc.BnncError, match="varies within a channel"):
        bnnc.compile(path, tmp_path / "out")
