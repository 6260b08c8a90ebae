"""Train small Bi-Real-style and ReActNet-style residual BNNs on scikit-learn's 8x8 digits and
export them to ONNX (plain torch, the TorchScript exporter).

    python examples/bireal_digits/train.py

Writes, next to this file:
  bireal_digits.onnx    Bi-Real Net: full-precision 3x3 stem + BatchNorm; three blocks
                        x + BN(binconv3x3(sign(x))), the second with stride 2 and an AvgPool 2x2
                        shortcut; global average pool; full-precision Linear 16 -> 10
  reactnet_digits.onnx  ReActNet: the same stem, two blocks RPReLU(x + BN(binconv(sign(x - b)))), the
                        sign trained through ApproxSign's gradient (so b moves off 0)
  test_x.npy            200 held-out images, float32 [200, 1, 8, 8], pixel / 16
  test_y.npy            their labels, int64 [200]

Binary weights are written the papers' way (w + (s * sign(w) - w).detach(), s = mean |w| per
channel), so the export holds +-s up to float32 rounding: compile with --quantize-weights 8,
which makes them exactly binary again. The full-precision stem and classifier are snapped to
8-bit integers times a power of two after training (what an 8-bit weight quantizer would leave),
so bnnc takes them exactly. Seeded and single-threaded: the files come out the same run to run.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root: tests/models/
from tests.models.residual import BinaryConv, bireal_net, export, reactnet  # noqa: E402


def snap_full_precision(model: nn.Module) -> None:
    """Stem and classifier weights -> 8-bit integers times a power of two (per layer)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not isinstance(m, BinaryConv):
                step = 2.0 ** np.ceil(np.log2(float(m.weight.abs().max()) / 127))
                m.weight.copy_(torch.clamp(torch.round(m.weight / step), -127, 127) * step)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 40) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    snap_full_precision(model)
    model.train()  # BatchNorm statistics once more, for the snapped weights
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        for i in range(0, len(x), 256):
            model(x[i:i + 256])
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, test_size=200, random_state=0,
                                                        stratify=digits.target)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    xs, ys = torch.from_numpy(x_test), torch.from_numpy(y_test).long()
    models = {"bireal_digits": lambda: bireal_net(16, approx=True), "reactnet_digits": lambda: reactnet(16, approx=True)}
    for name, make in models.items():
        model = train(make(), xt, yt)
        export(model, HERE / f"{name}.onnx", xs)
        print(f"{name}: test accuracy {accuracy(model, xs, ys):.3f}")
    np.save(HERE / "test_x.npy", x_test)
    np.save(HERE / "test_y.npy", y_test.astype(np.int64))


if __name__ == "__main__":
    main()
