"""bnnc's HLS path against hls4ml's QONNX path, on the same Brevitas QONNX MLPs.

    python benchmarks/hls_vs_hls4ml.py [--runs 5] [--vectors 2000]

Models: FINN's TFC shape (784-64-64-64-10, Brevitas defaults: 8-bit input, weight scale 0.1,
TensorNorm; random weights, no exact BatchNorm ties) and the trained 8x8-digits example.

bnnc: ONNX -> `bnnc compile` flow -> HLS project -> g++ C simulation. Build time = compile +
emit + g++; throughput = the csim program on a file of vectors; outputs vs the original ONNX
(compiler.original) within the compiler's stated error bound.

hls4ml: the QONNX flow of its documentation (qonnx cleanup, channels-last, GemmToMatMul, cleanup,
config_from_onnx_model, convert_from_onnx_model, compile(), predict()). Build time = conversion +
compile(); throughput = predict(). hls4ml lives in its own virtual environment
(benchmarks/.venv-hls4ml, created on first use with pip) and runs in a subprocess: this same
file, called with --hls4ml-worker. Our tests never need it.

Every figure is the median of --runs runs; ratios are hls4ml / bnnc.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-hls4ml"
# qonnx's cleanup runs nodes in onnxruntime, which (1.31) rejects the IR version 14 models that
# onnx 1.23 writes: a user hitting that pins onnx to a release writing IR <= 13.
HLS4ML_PACKAGES = ("hls4ml[onnx]==1.3.0", "qonnx==1.0.0", "onnx<1.20")
HLS4ML_PRECISION = "fixed<32,16>"  # what hls4ml's own QONNX TFC test uses (its default is fixed<16,6>)
AGREE_ATOL = 1e-2  # hls4ml's own QONNX tests compare with this


# ---- the hls4ml side (runs inside the virtual environment)

def hls4ml_worker(model_path: str, inputs: str, outputs: str, runs: int, work: str) -> dict:
    import hls4ml
    import numpy as np
    import qonnx.util.cleanup
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    x = np.load(inputs)
    builds, predicts, y = [], [], None
    for run in range(runs):
        start = time.perf_counter()
        model = qonnx.util.cleanup.cleanup_model(ModelWrapper(model_path))
        model = model.transform(ConvertToChannelsLastAndClean())
        model = model.transform(GemmToMatMul())
        model = qonnx.util.cleanup.cleanup_model(model)
        config = hls4ml.utils.config.config_from_onnx_model(model, granularity="name", backend="Vitis",
                                                            default_precision=HLS4ML_PRECISION)
        hls_model = hls4ml.converters.convert_from_onnx_model(model, output_dir=f"{work}/prj{run}", backend="Vitis",
                                                              hls_config=config, io_type="io_parallel")
        hls_model.compile()
        builds.append(time.perf_counter() - start)
        start = time.perf_counter()
        y = hls_model.predict(np.ascontiguousarray(x))
        predicts.append(time.perf_counter() - start)
    np.save(outputs, np.asarray(y, dtype=np.float64).reshape(len(x), -1))
    return {"version": hls4ml.__version__, "build": builds, "predict": predicts}


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.is_file():
        print(f"creating {VENV} with {', '.join(HLS4ML_PACKAGES)} (once)...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *HLS4ML_PACKAGES], check=True)
    return python


def run_hls4ml(model_path: Path, x_path: Path, work: Path, runs: int) -> dict:
    """{"version", "build", "predict", "outputs"} or {"error"}: how hls4ml failed, if it did."""
    try:
        python = ensure_venv()
    except (subprocess.CalledProcessError, OSError) as exc:
        return {"error": f"could not install hls4ml into {VENV}: {exc}"}
    out = work / "hls4ml_outputs.npy"
    proc = subprocess.run([str(python), __file__, "--hls4ml-worker", str(model_path), str(x_path), str(out),
                           str(runs), str(work / "hls4ml")], capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        return {"error": f"hls4ml exited with {proc.returncode}:\n{tail}"}
    import numpy as np

    return {**json.loads(lines[-1]), "outputs": np.load(out)}


# ---- the bnnc side

def run_bnnc(model_path: Path, x, work: Path, runs: int) -> dict:
    import numpy as np
    from bnnc import interp
    from bnnc.backends.csim import build
    from bnnc.backends.hls import emit
    from bnnc.driver import Options, compile_model, device_input, error_bound, hardware

    builds, sims = [], []
    for run in range(runs):
        start = time.perf_counter()
        compiled = compile_model(model_path, Options(targets=("hls",)))
        design = hardware(compiled)
        emit(design, work / f"bnnc{run}" / "hls")
        binary = build(work / f"bnnc{run}" / "hls")  # its own build folder: nothing cached
        builds.append(time.perf_counter() - start)
    graph = compiled.graph
    env = interp.run(graph, {graph.inputs[0][0]: x}, trace=True)  # the host part: input quantizer
    codes = design.serialize(env[device_input(graph)]).astype(np.int64)
    in_path, out_path = work / "bnnc_inputs.txt", work / "bnnc_outputs.txt"
    np.savetxt(in_path, codes, fmt="%d")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(binary), str(in_path), str(out_path)], check=True)
        sims.append(time.perf_counter() - start)
    out_type = graph.types[graph.outputs[0]]
    y = interp.to_real(np.loadtxt(out_path, dtype=np.int64, ndmin=2), out_type)
    return {"build": builds, "predict": sims, "outputs": y.reshape(len(x), -1), "bound": error_bound(graph),
            "cycles": design.cycles_per_frame}


# ---- comparison and report

def agreement(y, original, atol: float) -> dict:
    """Vectors whose every output is within atol (+ float32 rounding) of the original, and how
    often the predicted class is a top class of the original (within atol: scores tie often)."""
    import numpy as np

    err = np.abs(y - original)
    within = np.all(err <= atol + 1e-5 * np.maximum(1.0, np.abs(original)), axis=1)
    chosen = original[np.arange(len(y)), y.argmax(1)]
    return {"within": int(within.sum()), "max_err": float(err.max()),
            "argmax": float(np.mean(chosen >= original.max(1) - atol - 1e-5)), "first_bad": np.flatnonzero(~within)[:3]}


def report(title: str, n: int, ours: dict, theirs: dict, original) -> None:
    import numpy as np

    med = statistics.median
    print(f"\n== {title}: {n} vectors, median of {len(ours['build'])} runs")
    print(f"{'':34} {'build s':>8} {'vectors/s':>11}  vs original ONNX")
    a = agreement(ours["outputs"], original, ours["bound"])
    print(f"{'bnnc -> HLS, g++ csim':34} {med(ours['build']):>8.2f} {n / med(ours['predict']):>11.0f}  "
          f"{a['within']}/{n} within the stated bound {ours['bound']:.2g} (max |err| {a['max_err']:.2g}), "
          f"argmax {100 * a['argmax']:.1f}%  [design: {ours['cycles']} cycles/frame]")
    if "error" in theirs:
        print(f"{'hls4ml':34} FAILED: {theirs['error']}")
        return
    b = agreement(theirs["outputs"], original, AGREE_ATOL)
    name = f"hls4ml {theirs['version']} (QONNX, Vitis)"
    print(f"{name:34} {med(theirs['build']):>8.2f} {n / med(theirs['predict']):>11.0f}  "
          f"{b['within']}/{n} within {AGREE_ATOL:g} (max |err| {b['max_err']:.2g}), argmax {100 * b['argmax']:.1f}%")
    print(f"{'ratio hls4ml / bnnc':34} {med(theirs['build']) / med(ours['build']):>8.2f} "
          f"{med(ours['predict']) / med(theirs['predict']):>11.2f}")
    if b["within"] < n:
        constant = np.all(theirs["outputs"] == theirs["outputs"][:, :1], axis=1)
        print(f"hls4ml gives WRONG outputs on {n - b['within']} of {n} vectors"
              f"{f' (on {constant.sum()} all outputs are equal)' if constant.any() else ''}; the first ones:")
        for i in b["first_bad"]:
            print(f"  vector {i:<4} original {fmt(original[i])}\n  {'':11} hls4ml   {fmt(theirs['outputs'][i])}")


def fmt(row) -> str:
    return "[" + " ".join(f"{v:7.3f}" for v in row) + "]"


def models(work: Path, n: int):
    """(title, ONNX path, inputs) per model."""
    import numpy as np

    sys.path.insert(0, str(HERE.parent))
    from tests.models.exporters import brevitas_mlp

    tfc = brevitas_mlp(work / "tfc.onnx", sizes=(64, 64, 64, 10), in_features=784, ties=False)
    x = np.random.default_rng(0).random((n, 784)).astype(np.float32)  # pixel intensities in [0, 1)
    yield "TFC 784-64-64-64-10 (Brevitas QONNX, random weights)", Path(tfc), x
    digits = HERE.parent / "examples" / "digits_mlp"
    x = np.load(digits / "test_x.npy")
    x = np.concatenate([x] * -(-n // len(x)))[:n]
    yield "digits MLP 64-64-64-64-10 (Brevitas QONNX, trained)", digits / "digits_mlp.onnx", x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vectors", type=int, default=2000)
    parser.add_argument("--hls4ml-worker", nargs=5, metavar=("MODEL", "X", "Y", "RUNS", "WORK"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hls4ml_worker:
        model, x, y, runs, work = args.hls4ml_worker
        print(json.dumps(hls4ml_worker(model, x, y, int(runs), work)))
        return

    import numpy as np
    import onnx
    from bnnc.original import run_original

    work = Path(tempfile.mkdtemp(prefix="bnnc-vs-hls4ml-"))
    try:
        for title, path, x in models(work, args.vectors):
            np.save(work / "x.npy", x)
            original = run_original(onnx.load(path), x).reshape(len(x), -1)
            ours = run_bnnc(path, x, work, args.runs)
            theirs = run_hls4ml(path, work / "x.npy", work, args.runs)
            report(title, len(x), ours, theirs, original)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
