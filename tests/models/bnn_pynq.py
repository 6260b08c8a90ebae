"""FINN's own bnn_pynq models (``brevitas_examples.bnn_pynq`` inside the Brevitas wheel), exported
with ``brevitas.export.export_qonnx``.

The published checkpoints need the internet, so the weights are the models' own random init
(uniform in [-1, 1], quantized by their weight quantizers: +-1, or -1/0/+1 for 2-bit weights)
and every BatchNorm gets random statistics (``exporters.randomize_bn``). The hard cases sit on
fixed channels: gamma = 0 on channel 0, negative gammas on every third channel, and with
multi-bit activations exact ties on the rounding boundaries: channel 2 has beta = 1/2 (half
to even rounds it down to 0) and the last channel beta = -1/2 (rounds up to 0), both at a
reachable accumulator value x = mean.
"""

from __future__ import annotations

import torch
from torch import nn

from tests.models.exporters import _prepare, _quiet, _rng, randomize_bn

__all__ = ["MODELS", "build_bnn_pynq", "bnn_pynq"]

# name -> input shape; brevitas_examples has no lfc_2w2a.
MODELS = {
    **{f"tfc_{q}": (1, 28, 28) for q in ("1w1a", "1w2a", "2w2a")},
    **{f"sfc_{q}": (1, 28, 28) for q in ("1w1a", "1w2a", "2w2a")},
    **{f"lfc_{q}": (1, 28, 28) for q in ("1w1a", "1w2a")},
    **{f"cnv_{q}": (3, 32, 32) for q in ("1w1a", "1w2a", "2w2a")},
}


def build_bnn_pynq(name: str, seed: int = 0, ties: bool = True) -> nn.Module:
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, cfg = model_with_cfg(name, pretrained=False)
    act_bits = cfg.getint("QUANT", "ACT_BIT_WIDTH")
    gen = _rng(seed + 1)
    fan_in = None
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            elif isinstance(module, nn.Linear):
                fan_in = module.in_features
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                tie_channels = randomize_bn(module, gen, fan_in, 1.0, zero_beta=False, ties=ties)
                if act_bits > 1 and tie_channels:  # ties on the rounding boundaries instead of at 0
                    module.bias[tie_channels[0]] = 0.5
                    module.bias[tie_channels[-1]] = -0.5
            elif type(module).__name__ == "TensorNorm":
                module.weight.fill_(0.5 + float(torch.rand(1, generator=gen)))
                module.bias.fill_(float(torch.randn(1, generator=gen)))
                module.running_mean.fill_(float(torch.randn(1, generator=gen)))
                module.running_var.fill_(fan_in * (0.5 + float(torch.rand(1, generator=gen))))
    return model.eval()


def bnn_pynq(path, name: str, dynamo: bool = False, seed: int = 0, ties: bool = True) -> str:
    """``name`` as in MODELS (e.g. "cnv_2w2a"); ``dynamo`` picks Brevitas' export path."""
    from brevitas.export import export_qonnx

    path = _prepare(path)
    model = build_bnn_pynq(name, seed, ties)
    kwargs = {"dynamo": dynamo, **({"optimize": True} if dynamo else {})}
    with _quiet():
        export_qonnx(model, input_t=torch.zeros(1, *MODELS[name]), export_path=path, **kwargs)
    return path
