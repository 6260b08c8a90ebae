"""Train a small binarized MLP on scikit-learn's 8x8 digits with Brevitas and export it to QONNX.

    python examples/digits_mlp/train.py

Writes, next to this file:
  digits_mlp.onnx   the QONNX model (input [1, 64] float in [0, 1], output [1, 10] scores)
  test_x.npy        200 held-out images, float32 [200, 64], pixel / 16
  test_y.npy        their labels, int64 [200]

The network follows FINN's TFC (brevitas_examples/bnn_pynq, FC.py), scaled to the 64-pixel input:
8-bit input quantizer -> 3 x [binary-weight Linear -> BatchNorm -> bipolar activation]
-> binary-weight Linear -> TensorNorm. Runs in well under a minute on a CPU; seeded.
"""

from pathlib import Path

import numpy as np
import torch
from brevitas.export import export_qonnx
from brevitas.nn import QuantIdentity, QuantLinear
from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloatMaxInit
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0
HIDDEN = (64, 64, 64)
EPOCHS = 60
BATCH = 16
N_TEST_SAVED = 200


class TensorNorm(nn.Module):
    """FINN's TensorNorm: BatchNorm with a single scalar mean/var/weight/bias for the whole tensor."""

    def __init__(self, eps=1e-4, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))
        self.register_buffer("running_mean", torch.zeros(1))
        self.register_buffer("running_var", torch.ones(1))

    def forward(self, x):
        if self.training:
            mean, var = x.mean(), x.var(unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.reshape(1), self.momentum)
                self.running_var.lerp_(x.var(unbiased=True).reshape(1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / (var + self.eps).sqrt() * self.weight + self.bias


def build_model():
    # the input is in [0, 1]: unsigned 8 bit, scale learned from an initial 1/255
    layers = [QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, max_val=1.0)]
    fan_in = 64
    for width in HIDDEN:
        layers += [
            QuantLinear(fan_in, width, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),  # scale 0.1
            nn.BatchNorm1d(width),
            QuantIdentity(act_quant=SignedBinaryActPerTensorConst),  # bipolar, straight-through gradient
        ]
        fan_in = width
    layers += [QuantLinear(fan_in, 10, bias=False, weight_quant=SignedBinaryWeightPerTensorConst), TensorNorm()]
    model = nn.Sequential(*layers)
    # Brevitas' binary weight quantizer clamps the latent weights in place to [-0.1, 0.1] (its scale)
    # on every forward pass, so they need no clipping step (FINN clips to [-1, 1] with scale 1).
    for m in model.modules():
        if isinstance(m, QuantLinear):
            nn.init.uniform_(m.weight, -0.1, 0.1)
    return model


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # bit-identical results run to run
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
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
        if (epoch + 1) % 20 == 0:
            print(f"epoch {epoch + 1:3d}  train accuracy {accuracy(model, x_tr, y_tr):.4f}  "
                  f"test accuracy {accuracy(model, x_te_t, y_te_t):.4f}")

    model.eval()
    print(f"final test accuracy: {accuracy(model, x_te_t, y_te_t):.4f} on {len(y_te)} images; "
          f"on the {N_TEST_SAVED} saved: {accuracy(model, x_te_t[:N_TEST_SAVED], y_te_t[:N_TEST_SAVED]):.4f}")

    export_qonnx(model, input_t=torch.zeros(1, 64), export_path=str(HERE / "digits_mlp.onnx"), dynamo=False)
    np.save(HERE / "test_x.npy", x_te[:N_TEST_SAVED])
    np.save(HERE / "test_y.npy", y_te[:N_TEST_SAVED])
    print(f"wrote {HERE / 'digits_mlp.onnx'}, test_x.npy, test_y.npy")


if __name__ == "__main__":
    main()
