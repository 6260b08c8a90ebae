"""MST-aware training (MST-compression, ICCV 2023) of an SFC-sized binarized MLP.

    python examples/mst_training/train_mst.py            # full run, a few minutes on 2 cores
    python examples/mst_training/train_mst.py --quick    # smoke test, no files written
    python examples/mst_training/train_mst.py --input-bits 1   # binarized input pixels (sfc_in1_*)

The channel-reuse pass (compiler/passes/channel_reuse.py) computes a binary layer's output
channel from a similar one: a child costs min(d, K - d) XNORs instead of K, d the Hamming distance
between the two +-1 weight rows. Training decides how similar the rows are, so we add a term that
makes them more similar:

    loss = cross-entropy + lambda * sum_layers sum_(child, parent, s) |w_child - s * w_parent|_1 / N

over the edges of each hidden layer's reuse tree (s = -1 on complement edges), on the latent
(real) weights, N = number of weights in those layers. The tree is rebuilt with the pass's own
`build_tree` on sign(latent weights) every `--rebuild` epochs, so the term always pulls the current
tree neighbours together until their sign patterns agree.

The hardware only reuses inside the channels a folded layer computes in the same clock (PE
consecutive channels of `bnnc compile`'s folding). Hidden channels can be reordered freely (BN
parameters and the next layer's columns follow), so before export every model -- the baseline too
-- gets its hidden channels sorted along its reuse tree (depth-first), which puts tree neighbours
in the same group.

Each lambda is trained with several seeds (accuracy differences between lambdas are otherwise
lost in seed noise); every model is exported to QONNX and compiled twice: as `bnnc compile` does
(DEFAULT_PIPELINE + channel-reuse, auto folding: grouped trees) and with whole-layer trees (the
pass alone, as for fully parallel layers).
XNOR counts are `tree_stats` summed over the compiled Dense layers. Writes, next to this file:
  sfc_baseline.onnx   lambda = 0, first seed
  sfc_mst.onnx        the chosen lambda (fewest XNORs within 1 point of mean accuracy), first seed
  test_x.npy          200 held-out images, float32 (200, 784) in [0, 1]
With `--input-bits 1` the model binarizes its input pixels (sign(2x - 1), as FINN's SFC-w1a1), so
the first layer is XNORs too and a fully unrolled design is small enough to synthesize; the two
models are then written as sfc_in1_baseline.onnx and sfc_in1_mst.onnx (same test_x.npy).
"""
from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root: compiler/ and tests/models/

from bnnc import driver, interp  # noqa: E402
from bnnc.ir.ops import Dense  # noqa: E402
from bnnc.passes import DEFAULT_PIPELINE, parse_pipeline, run_pipeline  # noqa: E402
from bnnc.passes.channel_reuse import build_tree, tree_stats  # noqa: E402

from tests.models.exporters import TensorNorm, brevitas_input_quant, export_brevitas, load_digits_split  # noqa: E402

SIZES = (256, 256, 256, 10)  # FINN's SFC
IN_FEATURES = 28 * 28
BATCH = 64
LR = 0.005  # Adam; the latent weights live in [-0.1, 0.1], so 0.01 flips them very eagerly
N_TEST_SAVED = 200
PIPELINE = DEFAULT_PIPELINE + ",channel-reuse"
MAX_ACC_LOSS = 0.01  # accuracy budget (mean over seeds) for choosing the exported model


# ------------------------------------------------------------------------------------------------
# data and model


def load_data():
    """sklearn's 8x8 digits upsampled (bilinear) to 28x28, so the first layer really is 784 wide."""
    x_tr, y_tr, x_te, y_te = load_digits_split(seed=0)

    def up(x):
        x = F.interpolate(torch.from_numpy(x).view(-1, 1, 8, 8), size=(28, 28), mode="bilinear",
                          align_corners=False)
        return x.view(-1, IN_FEATURES).clamp(0.0, 1.0)  # bilinear stays in [0, 1]; guards rounding

    return up(x_tr), torch.from_numpy(y_tr), up(x_te), torch.from_numpy(y_te)


def build_model(input_bits: int = 8) -> nn.Sequential:
    """8-bit (or bipolar) input -> 3 x [binary Linear -> BN -> bipolar] -> binary Linear -> TensorNorm."""
    from brevitas.nn import QuantIdentity, QuantLinear
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

    layers = [brevitas_input_quant("uint8" if input_bits == 8 else "bipolar-centred")]
    fan_in = IN_FEATURES
    for width in SIZES[:-1]:
        layers += [QuantLinear(fan_in, width, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
                   nn.BatchNorm1d(width), QuantIdentity(act_quant=SignedBinaryActPerTensorConst)]
        fan_in = width
    layers += [QuantLinear(fan_in, SIZES[-1], bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
               TensorNorm()]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, QuantLinear):  # Brevitas clamps the latent weights to its scale, +-0.1
            nn.init.uniform_(m.weight, -0.1, 0.1)
    return model


def binary_layers(model):
    from brevitas.nn import QuantLinear
    return [m for m in model.modules() if isinstance(m, QuantLinear)]


# ------------------------------------------------------------------------------------------------
# the MST regularizer


def signs(weight: torch.Tensor) -> np.ndarray:
    return np.where(weight.detach().numpy() >= 0, 1, -1).astype(np.int8)  # Brevitas: sign(0) = +1


def tree_edges(weight: torch.Tensor):
    """(child, parent, s) of the whole-layer reuse tree over sign(weight)'s rows.

    add_cost=0: every channel that *could* reuse another gets an edge (and so a pull), not only
    those for which reuse already pays off under the current weights.
    """
    tree = build_tree(signs(weight), add_cost=0)
    child = np.flatnonzero(tree.parent >= 0)
    sign = np.where(tree.negate[child], -1.0, 1.0).astype(np.float32)
    return torch.from_numpy(child), torch.from_numpy(tree.parent[child]), torch.from_numpy(sign)[:, None]


def mst_penalty(layers, edges) -> torch.Tensor:
    """sum over tree edges of |w_child - s * w_parent|_1, divided by the number of weights."""
    total = sum((lin.weight[c] - s * lin.weight[p]).abs().sum() for lin, (c, p, s) in zip(layers, edges))
    return total / sum(lin.weight.numel() for lin in layers)


def tree_order(rows: np.ndarray) -> np.ndarray:
    """The channels in depth-first order of their reuse tree: every subtree is contiguous."""
    parent = build_tree(rows, add_cost=0).parent
    children = [np.flatnonzero(parent == c)[::-1].tolist() for c in range(len(rows))]
    order, stack = [], np.flatnonzero(parent < 0)[::-1].tolist()
    while stack:
        order.append(stack.pop())
        stack += children[order[-1]]
    return np.array(order)


@torch.no_grad()
def cluster_channels(model: nn.Sequential) -> nn.Sequential:
    """Reorder every hidden layer's channels by `tree_order` (an exact rewrite of the network),
    so the PE-sized groups that folded hardware reuses within hold tree neighbours."""
    lins = binary_layers(model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    for lin, bn, after in zip(lins[:-1], bns, lins[1:]):
        perm = torch.from_numpy(tree_order(signs(lin.weight)))
        lin.weight.copy_(lin.weight[perm])
        for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            t.copy_(t[perm])
        after.weight.copy_(after.weight[:, perm])
    return model


# ------------------------------------------------------------------------------------------------
# training and measuring


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def train(lam: float, seed: int, epochs: int, rebuild: int, data, input_bits: int) -> nn.Sequential:
    x_tr, y_tr = data[0], data[1]
    torch.manual_seed(seed)
    model = build_model(input_bits)
    # The hidden layers only: the 10 class rows are <1% of the XNORs (and auto folding computes
    # them one at a time, so they cannot reuse anyway); pulling them together costs accuracy.
    hidden = binary_layers(model)[:-1]
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for epoch in range(epochs):
        if lam and epoch % rebuild == 0:
            edges = [tree_edges(lin.weight) for lin in hidden]
        model.train()
        for idx in torch.randperm(len(x_tr)).split(BATCH):
            opt.zero_grad()
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            if lam:
                loss = loss + lam * mst_penalty(hidden, edges)
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def xnors(graph) -> tuple[int, int, list[int], int]:
    stats = [tree_stats(op.weights, op.reuse) for op in graph.ops if isinstance(op, Dense)]
    return (sum(s["xnor_before"] for s in stats), sum(s["xnor_after"] for s in stats),
            [s["xnor_after"] for s in stats], max(s["depth"] for s in stats))


def compile_and_count(path: Path, test_x: np.ndarray) -> dict:
    """XNORs as `bnnc compile --pipeline PIPELINE` builds them (auto folding, grouped trees) and
    with whole-layer trees (the pass alone, no folding groups); the compiled graph's scores."""
    compiled = driver.compile_model(path, driver.Options(pipeline=PIPELINE))
    whole, _ = run_pipeline(compiled.source, parse_pipeline(PIPELINE))
    before, after, per_layer, depth = xnors(compiled.graph)
    g = compiled.graph  # exact arithmetic, reuse trees included
    scores = interp.to_real(interp.run(g, {g.inputs[0][0]: test_x})[g.outputs[0]], g.types[g.outputs[0]])
    return {"before": before, "after": after, "per_layer": per_layer, "depth": depth,
            "whole": xnors(whole)[1], "scores": scores.reshape(len(test_x), -1)}


def job(args) -> dict:
    """One (lambda, seed) run in a worker process: train, export, compile, count."""
    lam, seed, epochs, rebuild, input_bits, out = args
    torch.set_num_threads(1)  # one run per core; also makes every run bit-reproducible
    torch.use_deterministic_algorithms(True)
    warnings.filterwarnings("ignore")
    data = load_data()
    model = train(lam, seed, epochs, rebuild, data, input_bits)
    with torch.no_grad():
        scores = model(data[2])
    cluster_channels(model)
    with torch.no_grad():  # the same network: scores change by float summation order at most
        same = float(((model(data[2]) - scores).abs().amax(1) < 1e-4).float().mean())
    path = Path(out) / f"sfc_in{input_bits}_lam{lam:g}_seed{seed}.onnx"
    export_brevitas(model, path, IN_FEATURES)
    test_x = data[2][:N_TEST_SAVED].numpy()
    r = compile_and_count(path, test_x)
    with torch.no_grad():
        pred = model(torch.from_numpy(test_x)).argmax(1).numpy()
    # Class scores are integers underneath and often tie exactly; float32 torch then picks a
    # winner by rounding. Agreement = torch's class is one of the compiled graph's top classes.
    scores = r.pop("scores")
    agree = np.mean(scores[np.arange(len(pred)), pred] == scores.max(1))
    return dict(r, lam=lam, seed=seed, acc=accuracy(model, data[2], data[3]), agree=agree, same=same,
                path=str(path))


# ------------------------------------------------------------------------------------------------
# report


def summarize(runs: list[dict], lambdas: list[float]) -> dict:
    """Mean over seeds per lambda."""
    out = {}
    for lam in lambdas:
        rs = [r for r in runs if r["lam"] == lam]
        out[lam] = {k: float(np.mean([r[k] for r in rs])) for k in ("acc", "before", "after", "whole")}
        out[lam].update(acc_min=min(r["acc"] for r in rs), acc_max=max(r["acc"] for r in rs),
                        depth=max(r["depth"] for r in rs),
                        per_layer=np.mean([r["per_layer"] for r in rs], axis=0).round().astype(int).tolist())
    return out


def choose(summary: dict) -> float:
    """The lambda > 0 with the fewest (compiled) XNORs whose mean accuracy is within budget."""
    ok = [lam for lam in summary if lam and summary[lam]["acc"] >= summary[0.0]["acc"] - MAX_ACC_LOSS - 1e-9]
    if not ok:  # nothing in budget: export the most accurate regularized model, and say so
        return max((lam for lam in summary if lam), key=lambda lam: summary[lam]["acc"])
    return min(ok, key=lambda lam: summary[lam]["after"])


def table(summary: dict) -> str:
    base = summary[0.0]
    lines = ["| lambda | test acc (mean, min-max) | XNOR no reuse | after reuse, `bnnc compile` "
             "(per layer) | (a) | (b) | max depth | after reuse, whole-layer trees | (a) | (b) |",
             "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for lam, s in summary.items():
        lines.append(
            f"| {lam:g} | {100 * s['acc']:.2f}% ({100 * s['acc_min']:.1f}-{100 * s['acc_max']:.1f}) "
            f"| {s['before']:,.0f} | {s['after']:,.0f} ({' / '.join(f'{n:,}' for n in s['per_layer'])}) "
            f"| {base['before'] / s['after']:.2f}x | {base['after'] / s['after']:.2f}x | {s['depth']} "
            f"| {s['whole']:,.0f} | {base['before'] / s['whole']:.2f}x | {base['whole'] / s['whole']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lambdas", default="1,2,3,5", help="regularizer strengths (0 always runs)")
    ap.add_argument("--seeds", default="0,1,2,3", help="every lambda is trained with each seed")
    ap.add_argument("--rebuild", type=int, default=1, help="rebuild the trees every N epochs")
    ap.add_argument("--jobs", type=int, default=2, help="parallel runs (one core each)")
    ap.add_argument("--out", type=Path, default=HERE, help="where to write the .onnx/.npy files")
    ap.add_argument("--input-bits", type=int, choices=(8, 1), default=8,
                    help="8: u8 pixels (sfc_*.onnx); 1: binarized pixels (sfc_in1_*.onnx)")
    ap.add_argument("--quick", action="store_true", help="2 epochs, one seed, one lambda; no files")
    args = ap.parse_args(argv)
    lambdas = [0.0] + [float(v) for v in args.lambdas.split(",") if float(v) != 0]
    seeds = [int(v) for v in args.seeds.split(",")]
    epochs = args.epochs
    if args.quick:
        epochs, lambdas, seeds = 2, [0.0, lambdas[-1]], seeds[:1]

    start = time.perf_counter()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # before forking: a child must not inherit a live OpenMP pool
    with tempfile.TemporaryDirectory() as tmp:
        print(f"training {len(lambdas)} lambdas x {len(seeds)} seeds, {epochs} epochs, {args.jobs} at a time",
              flush=True)
        work = [(lam, seed, epochs, args.rebuild, args.input_bits, tmp) for lam in lambdas for seed in seeds]
        # fork: the workers inherit the imports; each run is independent and seeded
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            runs = []
            for r in pool.imap(job, work):
                print(f"  lambda={r['lam']:g} seed={r['seed']}: accuracy {100 * r['acc']:.2f}%, XNORs "
                      f"{r['after']:,} (whole-layer trees {r['whole']:,}); reordering kept the scores of "
                      f"{100 * r['same']:.1f}% of the test images, compiled graph agrees with torch on "
                      f"{100 * r['agree']:.1f}% of the saved images", flush=True)
                runs.append(r)
        summary = summarize(runs, lambdas)
        best = choose(summary)
        print(f"\n{epochs} epochs, seeds {seeds}, pipeline {PIPELINE}\n")
        print(table(summary))
        print("\n(a) = baseline XNORs without reuse / this model's after reuse; (b) = baseline after "
              "reuse / this model's after reuse (both on the means over seeds).")
        within = summary[best]["acc"] >= summary[0.0]["acc"] - MAX_ACC_LOSS - 1e-9
        print(f"chosen: lambda={best:g} ({'within' if within else 'NOT within'} "
              f"{100 * MAX_ACC_LOSS:g} point of the baseline's mean accuracy)")
        if not args.quick:
            args.out.mkdir(parents=True, exist_ok=True)
            first = {r["lam"]: r for r in runs if r["seed"] == seeds[0]}
            prefix = "sfc" if args.input_bits == 8 else "sfc_in1"
            shutil.copy(first[0.0]["path"], args.out / f"{prefix}_baseline.onnx")
            shutil.copy(first[best]["path"], args.out / f"{prefix}_mst.onnx")
            np.save(args.out / "test_x.npy", load_data()[2][:N_TEST_SAVED].numpy())
            for name, r in ((f"{prefix}_baseline", first[0.0]), (f"{prefix}_mst", first[best])):
                print(f"wrote {args.out / name}.onnx: seed {r['seed']}, accuracy {100 * r['acc']:.2f}%, "
                      f"XNORs {r['before']:,} -> {r['after']:,}")
            print(f"wrote {args.out / 'test_x.npy'}")
    print(f"total time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
