"""One fuzz case: write a (mutated) model into its own folder, compile it the way the CLI does,
and classify what happened.

Good outcomes: exit 0 with the compiled model agreeing with the original (run by onnxruntime
or onnx.reference), or exit 2 with exactly one `bnnc: error:` line and no output folder.
Everything else is a bug: a traceback, a hang, a wrong answer, a noisy or multi-line error, a
file written outside the output folder.
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from bnnc import api, cli, driver
from bnnc.frontend.qonnx_ops import ALL_CUSTOM_OPS
from bnnc.original import run_original
from onnx import TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator

GOOD = ("compiled", "refused")


@dataclass
class Outcome:
    kind: str  # compiled, refused, or a bug: traceback, hang, wrong, message, escaped
    detail: str = ""
    compared: bool = False  # compiled and checked against the original
    rounding: bool = False  # differs from the float32 original, agrees with it run in float64


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` in bnnc hides it."""


@contextlib.contextmanager
def _deadline(seconds: float):
    def on_alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _capture_compiled(into: list):
    """Keep what the CLI compiled, to check its answers without compiling twice."""
    original = driver.compile_model

    def recording(*args, **kwargs):
        into.append(original(*args, **kwargs))
        return into[-1]

    driver.compile_model = recording
    try:
        yield
    finally:
        driver.compile_model = original


def write_case(folder: Path, data: bytes, files: dict[str, bytes]) -> Path:
    """The case's model and side files inside folder/case; everything bnnc writes must stay in
    folder/case/out."""
    case = folder / "case"
    case.mkdir(parents=True)
    for name, content in files.items():
        (case / name).write_bytes(content)
    (case / "model.onnx").write_bytes(data)
    return case


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _check_written(folder: Path, case: Path, before: set[str], rc: int) -> Outcome | None:
    new = {p for p in _listing(folder) - before if not p.startswith(str(Path("case") / "out"))}
    if new - {str(Path("case") / "out")}:
        return Outcome("escaped", f"files outside the output folder: {sorted(new)[:5]}")
    if rc != 0 and (case / "out").exists():
        return Outcome("escaped", "an output folder was written for a refused model")
    return None


def agree(compiled, samples: int = 16) -> Outcome:
    """The compiled model's answers against the original's, with bnnc verify's tolerance
    (the fixed-point error bound plus float32 rounding of the original)."""
    x = driver.sample_inputs(compiled.source, samples)
    y = driver.execute(compiled, x, "interp")
    try:
        with np.errstate(all="ignore"):
            original = np.asarray(run_original(compiled.model, x), dtype=np.float64).reshape(y.shape)
    except Exception as exc:  # the original runtime refuses the (mutated) model: nothing to compare
        return Outcome("compiled", f"original not runnable: {type(exc).__name__}")
    if not np.all(np.isfinite(original)):
        return Outcome("compiled", "original gives non-finite outputs")
    bad = _differences(compiled, y, original)
    if bad is None:
        return Outcome("compiled", compared=True)
    precise = _float64_original(compiled.model, x)
    if precise is not None and _differences(compiled, y, precise.reshape(y.shape)) is None:
        return Outcome("compiled", "differs from the float32 original only by its rounding", True, True)
    i = tuple(np.argwhere(bad)[0])
    return Outcome("wrong", f"output {i}: bnnc {y[i]!r}, original {original[i]!r}")


def _differences(compiled, y, original):
    allowed = driver.error_bound(compiled.graph) + api.ORIGINAL_RTOL * np.maximum(1.0, np.abs(original))
    bad = np.abs(y - original) > allowed
    return bad if np.any(bad) else None


def _float64_original(model: onnx.ModelProto, x: np.ndarray):
    """The original model with its float32 tensors widened to float64, run by onnx.reference:
    a mutated model with huge or tiny constants makes float32 rounding decide a Sign that
    bnnc's exact arithmetic gets right. None when it does not run."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    tensors = list(m.graph.initializer) + [a.t for n in m.graph.node for a in n.attribute if a.HasField("t")]
    for t in tensors:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for info in [*m.graph.input, *m.graph.output, *m.graph.value_info]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in list(m.graph.node):
        for a in node.attribute:
            if node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.DOUBLE
        if node.domain not in ("", "ai.onnx"):  # the QONNX ops compute in float32 by definition
            out = node.output[0]
            node.output[0] = out + "__f32"
            m.graph.node.insert(list(m.graph.node).index(node) + 1,
                                onnx.helper.make_node("Cast", [out + "__f32"], [out], to=TensorProto.DOUBLE))
    inits = {t.name for t in m.graph.initializer}
    name = next(i.name for i in m.graph.input if i.name not in inits)
    try:
        with np.errstate(all="ignore"):
            run = ReferenceEvaluator(m, new_ops=ALL_CUSTOM_OPS)
            return np.concatenate([np.asarray(run.run(None, {name: x[i:i + 1].astype(np.float64)})[0])
                                   for i in range(len(x))]).astype(np.float64)
    except Exception:
        return None


def run_case(folder: Path, data: bytes, files: dict[str, bytes], timeout: float = 20.0) -> Outcome:
    """Compile in this process through cli.main, as `bnnc compile model.onnx -o out` would."""
    case = write_case(folder, data, files)
    before = _listing(folder)
    compiled, stderr = [], io.StringIO()
    cwd = os.getcwd()
    os.chdir(case)  # relative paths bnnc might write resolve inside the case
    try:
        with _deadline(timeout), contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()), \
                _capture_compiled(compiled):
            rc = cli.main(["compile", str(case / "model.onnx"), "-o", str(case / "out")])
            outcome = agree(compiled[-1]) if rc == 0 else None
    except _Timeout:
        return Outcome("hang", f"no result after {timeout} s")
    except BaseException:  # noqa: BLE001 - any exception reaching here is what the fuzzer looks for
        return Outcome("traceback", traceback.format_exc(limit=-8))
    finally:
        os.chdir(cwd)
    return _check_written(folder, case, before, rc) or outcome or _refusal(rc, stderr.getvalue())


def _refusal(rc: int, stderr: str) -> Outcome:
    lines = stderr.strip().splitlines()
    if rc == 2 and len(lines) == 1 and lines[0].startswith("bnnc: error: "):
        return Outcome("refused", lines[0])
    return Outcome("message", f"exit {rc}, stderr: {stderr.strip()[:2000]}")


def run_case_cli(folder: Path, data: bytes, files: dict[str, bytes], timeout: float = 120.0) -> Outcome:
    """The same case through a real `python -m bnnc` process (no answer check)."""
    case = write_case(folder, data, files)
    before = _listing(folder)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    try:
        proc = subprocess.run([sys.executable, "-m", "bnnc", "compile", "model.onnx", "-o", "out"],
                              cwd=case, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return Outcome("hang", f"no result after {timeout} s")
    if "Traceback" in proc.stderr:
        return Outcome("traceback", proc.stderr[-3000:])
    written = _check_written(folder, case, before, proc.returncode)
    if written:
        return written
    return Outcome("compiled") if proc.returncode == 0 else _refusal(proc.returncode, proc.stderr)
