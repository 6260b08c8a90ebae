"""Train a small binarized CNN on scikit-learn's 8x8 digits with Brevitas and export it to QONNX.

    python examples/digits_cnv/train.py

Writes, next to this file:
  digits_cnv.onnx   the QONNX model (input [1, 1, 8, 8] float in [0, 1], output [1, 10] scores)
  test_x.npy        200 held-out images, float32 [200, 1, 8, 8], pixel / 16
  test_y.npy        their labels, int64 [200]

Topology (FINN CNV-style, scaled down to 8x8x1; every conv 3x3, binary weights, no bias):

  8-bit input quantizer
  conv 1 -> 16, zero padding 1   -> BatchNorm -> bipolar            8x8x16
  conv 16 -> 32, zero padding 1  -> MaxPool 2x2 -> BatchNorm -> bipolar   4x4x32
  conv 32 -> 32, no padding      -> BatchNorm -> bipolar            2x2x32
  flatten (128) -> binary-weight Linear 128 -> 10 -> TensorNorm

The zero padding is not a bipolar value (a pad contributes 0 to the sum, not +-1), and the max
pool sits in front of its BatchNorm: where a channel's trained gamma is negative the compiler has
to turn it into a min pool of the accumulators. Runs in well under a minute on a CPU; seeded and
single-threaded, so the files come out bit-identical run to run.

Ties. A binary layer's accumulator is (input scale) x (weight scale 0.1) x an integer, but float32
cannot represent 0.1 x an integer exactly, so the original model's float sums are off by an ulp or
so. If a BatchNorm threshold fell exactly on a reachable accumulator value, the float model and
bnnc's exact arithmetic could pick different signs. tests/models/conv_exporters.py (ties=False)
avoids that by never putting a threshold on the grid; after training we make it a guarantee:
each sign's threshold is moved to the middle of the gap between the two reachable integer
accumulator values around it (`center_thresholds`). No reachable value lies in between, so the
network computes exactly the same function; the float model now has half a grid step of margin
at every sign.
"""

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from brevitas.export import export_qonnx
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloatMaxInit
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root: compiler/ and tests/models/
from tests.models.exporters import TensorNorm  # noqa: E402  (FINN's scalar BatchNorm)

SEED = 0
EPOCHS = 40
BATCH = 32
N_TEST_SAVED = 200


def conv(c_in, c_out, padding):
    return QuantConv2d(c_in, c_out, 3, padding=padding, bias=False,
                       weight_quant=SignedBinaryWeightPerTensorConst)  # +-0.1


def bipolar():
    return QuantIdentity(act_quant=SignedBinaryActPerTensorConst)  # +-1 (0 -> +1), straight-through gradient


def build_model():
    model = nn.Sequential(
        # the input is in [0, 1]: unsigned 8 bit, scale learned from an initial 1/255
        QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, max_val=1.0),
        conv(1, 16, padding=1), nn.BatchNorm2d(16, eps=1e-4), bipolar(),
        conv(16, 32, padding=1), nn.MaxPool2d(2), nn.BatchNorm2d(32, eps=1e-4), bipolar(),
        conv(32, 32, padding=0), nn.BatchNorm2d(32, eps=1e-4), bipolar(),
        nn.Flatten(),
        QuantLinear(32 * 2 * 2, 10, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
        TensorNorm(),
    )
    # Brevitas' binary weight quantizer clamps the latent weights in place to [-0.1, 0.1] (its
    # scale) on every forward pass, so they need no clipping step.
    for m in model.modules():
        if isinstance(m, (QuantConv2d, QuantLinear)):
            nn.init.uniform_(m.weight, -0.1, 0.1)
    # Start every other channel of the BatchNorm behind the max pool at gamma = -1. The network
    # can learn the same things either way (a channel with negative gamma is the complement of
    # one with positive gamma; the next layer's weights absorb the sign), but for bnnc it is the
    # hard case: max pool -> BN(gamma < 0) -> sign is a min pool of the signs, not a max pool.
    with torch.no_grad():
        model[6].weight[1::2] = -1.0
    return model


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@torch.no_grad()
def center_thresholds(model):
    """Move every BatchNorm -> sign threshold to the middle between two reachable accumulator values.

    The BN before a bipolar activation outputs >= 0 (-> +1) iff gamma * (acc - t) >= 0 with
    t = mean - beta * sqrt(var + eps) / gamma. acc is unit * k for an integer k, unit = input
    scale x weight scale. Shifting the running mean by (floor(t / unit) + 1/2) * unit - t moves t
    to the middle of its gap without crossing a reachable value. Returns the smallest distance,
    in units, from a threshold to the integer grid (0.5 up to float32 rounding of the mean).
    """
    in_scale, unit, margin = None, None, math.inf
    mods = list(model)
    for i, m in enumerate(mods):
        if isinstance(m, QuantIdentity):
            in_scale = float(m.act_quant(torch.zeros(1)).scale)
        elif isinstance(m, (QuantConv2d, QuantLinear)):
            unit = in_scale * float(m.quant_weight().scale)
        elif isinstance(m, nn.BatchNorm2d) and isinstance(mods[i + 1], QuantIdentity):
            gamma, beta = m.weight.double(), m.bias.double()
            mean, std = m.running_mean.double(), (m.running_var.double() + m.eps).sqrt()
            live = gamma != 0  # gamma == 0: a constant channel, nothing to move
            t = mean - beta * std / torch.where(live, gamma, torch.ones_like(gamma))
            target = (torch.floor(t / unit) + 0.5) * unit
            m.running_mean.copy_(torch.where(live, mean + (target - t), mean).float())
            t_new = m.running_mean.double() - beta * std / torch.where(live, gamma, torch.ones_like(gamma))
            frac = (t_new / unit)[live]
            margin = min(margin, float((frac - frac.round()).abs().min()))
    return margin


def main():
    start = time.perf_counter()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # bit-identical results run to run
    torch.use_deterministic_algorithms(True)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    x_tr, y_tr = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    x_te_t, y_te_t = torch.from_numpy(x_te), torch.from_numpy(y_te)

    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(EPOCHS):
        model.train()
        for idx in torch.randperm(len(x_tr)).split(BATCH):
            opt.zero_grad()
            loss_fn(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
        sched.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  train accuracy {accuracy(model, x_tr, y_tr):.4f}  "
                  f"test accuracy {accuracy(model, x_te_t, y_te_t):.4f}")

    model.eval()
    before = accuracy(model, x_te_t, y_te_t)
    margin = center_thresholds(model)
    print(f"thresholds centred between reachable accumulator values (closest: {margin:.3f} grid steps); "
          f"test accuracy {before:.4f} before, {accuracy(model, x_te_t, y_te_t):.4f} after")
    acc_saved = accuracy(model, x_te_t[:N_TEST_SAVED], y_te_t[:N_TEST_SAVED])
    print(f"float model: test accuracy {accuracy(model, x_te_t, y_te_t):.4f} on {len(y_te)} images; "
          f"on the {N_TEST_SAVED} saved: {acc_saved:.4f}")

    onnx_path = HERE / "digits_cnv.onnx"
    export_qonnx(model, input_t=torch.zeros(1, 1, 8, 8), export_path=str(onnx_path), dynamo=False)
    np.save(HERE / "test_x.npy", x_te[:N_TEST_SAVED])
    np.save(HERE / "test_y.npy", y_te[:N_TEST_SAVED])

    # The exported graph has QONNX custom ops (Quant, BipolarQuant) that onnxruntime cannot run;
    # bnnc runs such graphs in onnx.reference with its own implementations of those ops.
    import onnx
    from bnnc.original import run_original

    scores = run_original(onnx.load(onnx_path), x_te)
    with torch.no_grad():
        torch_scores = model(x_te_t).numpy()
    print(f"exported model (onnx.reference + bnnc's QONNX ops): test accuracy "
          f"{np.mean(scores.argmax(1) == y_te):.4f} on {len(y_te)} images; on the {N_TEST_SAVED} saved: "
          f"{np.mean(scores[:N_TEST_SAVED].argmax(1) == y_te[:N_TEST_SAVED]):.4f}; "
          f"max |onnx - torch| = {np.abs(scores - torch_scores).max():.3g}")
    print(f"wrote {onnx_path.name} ({onnx_path.stat().st_size} bytes), test_x.npy, test_y.npy "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
