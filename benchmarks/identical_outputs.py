"""Do two commits generate the same bytes? Builds every test model at both and diffs the builds.

    python benchmarks/identical_outputs.py OLD [NEW]      (NEW defaults to the work tree)

The models are exported once, with this checkout's exporters (tests/models/), plus the committed
examples/*.onnx; each is compiled with `bnnc compile --target all` in a few variants (the default
pipeline, with channel-reuse, and with a folding file that makes reuse and input chunks meet)
by each commit's own code, checked out with `git archive` into a temporary folder. Every file of
every build is compared byte for byte; the script prints each difference and exits 1 if any.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REUSE = "quantize-inputs,fold-constants,fold-thresholds,fold-constants,fold-fixed-point,channel-reuse"


def export_models(folder: Path) -> dict[str, Path]:
    """Small models covering every layer mode: integer/bipolar inputs, zero padding (masked),
    padding with +1, pools, gathers, threshold / affine / plain outputs."""
    sys.path.insert(0, str(ROOT))
    from tests.models import conv_exporters as cnv
    from tests.models import exporters as mlp

    models = {
        "brevitas_mlp_uint8": lambda p: mlp.brevitas_mlp(p, sizes=(32, 32, 10), in_features=64),
        "brevitas_mlp_bipolar": lambda p: mlp.brevitas_mlp(p, sizes=(32, 16, 10), in_features=48,
                                                           input_quant="bipolar"),
        "torch_sign_mlp": lambda p: mlp.torch_sign_mlp(p),
        "torch_sign_mlp_bias_bn": lambda p: mlp.torch_sign_mlp(p, bias=True, final_bn=True),
        "finn_mt_mlp_1bit": lambda p: mlp.finn_multithreshold_mlp(p, input_bits=1),
        "finn_mt_mlp_8bit": lambda p: mlp.finn_multithreshold_mlp(p, input_bits=8),
        "brevitas_cnv": lambda p: cnv.brevitas_cnv(p, channels=(8, "M", 16), dense=(16, 10), in_shape=(3, 10, 10)),
        "brevitas_cnv_pad": lambda p: cnv.brevitas_cnv(p, channels=(8, 8, "M", 16), dense=(10,),
                                                       in_shape=(1, 8, 8), padding=1),
        "brevitas_cnv_pad_bipolar": lambda p: cnv.brevitas_cnv(p, channels=(8, 16), dense=(10,), in_shape=(1, 6, 6),
                                                               padding=1, input_quant="bipolar"),
        "torch_sign_cnv": lambda p: cnv.torch_sign_cnv(p),
        "larq_style_cnv": lambda p: cnv.larq_style_cnv(p),
    }
    out = {}
    for name, export in models.items():
        out[name] = Path(export(str(folder / f"{name}.onnx")))
    for path in sorted(ROOT.glob("examples/*/*.onnx")):
        out[f"example_{path.stem}"] = path
    return out


def folding_files(folder: Path) -> dict[str, Path]:
    """Per layer all channels at once with input chunks: reuse children only where |D| <= SIMD."""
    spec = {"layers": {str(i): {"pe": pe, "simd": simd} for i, (pe, simd) in
                       enumerate([(32, 16), (32, 8), (10, 32)])}}
    path = folder / "chunks.json"
    path.write_text(json.dumps(spec))
    return {"chunks": path}


def variants(name: str, folds: dict[str, Path]) -> list[tuple[str, list[str]]]:
    if name.startswith(("example_bireal", "example_reactnet")):  # residual: float weights, float input
        x = ROOT / "examples" / "bireal_digits" / "test_x.npy"
        return [("default", ["--quantize-weights", "8", "--calibrate", str(x)])]
    out = [("default", []), ("reuse", ["--pipeline", REUSE])]
    if name == "brevitas_mlp_uint8":  # 64 -> 32 -> 32 -> 10
        out.append(("reuse_chunks", ["--pipeline", REUSE, "--fold", str(folds["chunks"])]))
    return out


def checkout(commit: str | None, folder: Path) -> Path:
    """`commit` (None: the work tree as it is now, uncommitted files included) copied into `folder`,
    so that editing the work tree while this runs changes nothing."""
    folder.mkdir(parents=True)
    if commit is None:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"], check=True,
                                capture_output=True).stdout.split(b"\0")
        names = b"\0".join(n for n in listed if n and (ROOT / n.decode()).is_file())  # not the deleted ones
        archive = subprocess.run(["tar", "-c", "-C", str(ROOT), "--null", "-T", "-"], input=names, check=True,
                                 capture_output=True).stdout
    else:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def build_all(source: Path, models: dict[str, Path], folds: dict[str, Path], out: Path) -> dict[str, str]:
    """Compile every (model, variant) with the code in `source`; returns failures' messages."""
    if (source / "compiler" / "__main__.py").is_file() and not (source / "bnnc").exists():
        # compiler/ installs as the package bnnc: without this link `python -m bnnc` would run
        # whatever bnnc is installed (the work tree, for an editable install), not this commit
        (source / "bnnc").symlink_to("compiler", target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(source)}
    failures = {}
    for name, model in models.items():
        for variant, args in variants(name, folds):
            target = out / f"{name}__{variant}"
            done = subprocess.run([sys.executable, "-m", "bnnc", "compile", str(model), "-o", str(target),
                                   "--target", "all", *args], cwd=source, env=env, capture_output=True, text=True)
            if done.returncode:
                failures[target.name] = (done.stderr.strip().splitlines() or ["?"])[-1]
    return failures


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def compare(old: Path, new: Path) -> list[tuple[str, str]]:
    """(file, how it differs) for every file not byte-identical in both folders."""
    differences = []
    old_files, new_files = files_under(old), files_under(new)
    differences += [(name, "only at the old commit") for name in sorted(old_files - new_files)]
    differences += [(name, "only at the new commit") for name in sorted(new_files - old_files)]
    for name in sorted(old_files & new_files):
        if not filecmp.cmp(old / name, new / name, shallow=False):
            how = json_changes(old / name, new / name) if name.endswith(".json") else ""
            differences.append((name, how or "differs"))
    return differences


def json_changes(old: Path, new: Path) -> str:
    """For JSON files: the keys added, removed or changed (list indices shown as [*])."""
    changes = set()

    def walk(a, b, where):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in a.keys() | b.keys():
                if key not in b:
                    changes.add(f"removed {where}.{key}")
                elif key not in a:
                    changes.add(f"added {where}.{key}")
                else:
                    walk(a[key], b[key], f"{where}.{key}")
            if [k for k in a if k in b] != [k for k in b if k in a]:
                changes.add(f"key order of {where}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for x, y in zip(a, b):
                walk(x, y, f"{where}[*]")
        elif a != b:
            changes.add(f"changed {where}")
    try:
        walk(json.loads(old.read_text()), json.loads(new.read_text()), "")
    except ValueError:
        return ""
    return "; ".join(sorted(changes)) if changes else "same JSON, other formatting"


def summarize(differences: list[tuple[str, str]]) -> list[str]:
    """One line per kind of change: the files (by name within their build) and how they differ."""
    groups: dict[str, list[str]] = {}
    for name, how in differences:
        groups.setdefault(how, []).append(name)
    out = []
    for how, names in groups.items():
        if how in ("differs", "only at the old commit", "only at the new commit"):
            out += [f"{how}: {name}" for name in names]
        else:
            files = sorted({name.split("/", 1)[-1] for name in names})
            out.append(f"{len(names)} file(s) in {len({n.split('/')[0] for n in names})} build(s) "
                       f"({', '.join(files)}): {how}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="a commit")
    parser.add_argument("new", nargs="?", help="a commit (default: the work tree as it is)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bnnc-identical-") as tmp:
        tmp = Path(tmp)
        (tmp / "models").mkdir()
        start = time.perf_counter()
        sources = {"old": checkout(args.old, tmp / "src_old"), "new": checkout(args.new, tmp / "src_new")}
        models = export_models(tmp / "models")
        folds = folding_files(tmp / "models")
        failures = {}
        for side, source in sources.items():
            failures[side] = build_all(source, models, folds, tmp / f"out_{side}")
        builds = sorted(p.name for p in (tmp / "out_old").iterdir()) if (tmp / "out_old").exists() else []
        differences = compare(tmp / "out_old", tmp / "out_new")
        count = len(files_under(tmp / "out_old"))
        print(f"{len(models)} models, {len(builds)} builds, {count} files at {args.old}, "
              f"compared with {args.new or 'the work tree'} in {time.perf_counter() - start:.0f} s")
        for side in ("old", "new"):
            for build, message in sorted(failures[side].items()):
                print(f"  {side}: {build} failed to compile: {message}")
        if failures["old"] != failures["new"]:
            differences.append(("(builds)", "the two commits fail on different builds (see above)"))
        for line in summarize(differences):
            print(f"  {line}")
        print("identical" if not differences else f"{len(differences)} difference(s)")
        return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
