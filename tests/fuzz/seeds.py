"""The real models the fuzzer mutates: small ones from each exporter bnnc supports.

Brevitas models are built without exact BatchNorm ties: the original runs in float32, whose
rounding breaks such ties either way, so only exact arithmetic can be compared there.
Exported once into a folder and reused from there: tests/fuzz/models/ holds the committed
exports (a few KB each; torch and Brevitas take seconds to export). Delete a file there to
export it again.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.onnx_builders import sign_bn_mlp


def _helper_mlp(path):
    rng = np.random.default_rng(0)
    weights = [rng.choice([-1.0, 1.0], (12, 8)), rng.choice([-1.0, 1.0], (8, 4))]
    bn = dict(gamma=rng.normal(size=8), beta=rng.normal(size=8), mean=rng.integers(-3, 3, 8), var=np.ones(8))
    return sign_bn_mlp(path, weights, [bn])


def _helper_mlp_where(path):
    rng = np.random.default_rng(1)
    weights = [rng.choice([-1.0, 1.0], (10, 6)), rng.choice([-1.0, 1.0], (6, 3))]
    bn = dict(gamma=rng.normal(size=6), beta=rng.normal(size=6), mean=np.zeros(6), var=np.full(6, 2.0))
    return sign_bn_mlp(path, weights, [bn], act="Where")


def _torch_mlp(path):
    from tests.models.exporters import torch_sign_mlp
    return torch_sign_mlp(path, sizes=(16, 16, 10), in_features=24, ste="ste_add", bias=True)


def _finn_mlp(path):
    from tests.models.exporters import finn_multithreshold_mlp
    return finn_multithreshold_mlp(path, sizes=(16, 10), in_features=20)


def _brevitas_mlp(path):
    from tests.models.exporters import brevitas_mlp
    return brevitas_mlp(path, sizes=(16, 16, 10), in_features=20, ties=False)


def _torch_cnv(path):
    from tests.models.conv_exporters import torch_sign_cnv
    return torch_sign_cnv(path, channels=(4, "M", 8), dense=(6,), in_shape=(1, 6, 6))


def _larq_cnv(path):
    from tests.models.conv_exporters import larq_style_cnv
    return larq_style_cnv(path, in_shape_nhwc=(6, 6, 1), channels=(4, 8), dense=5)


def _brevitas_cnv(path):
    from tests.models.conv_exporters import brevitas_cnv
    return brevitas_cnv(path, channels=(4, "M", 8), dense=(16, 10), in_shape=(1, 8, 8), ties=False)


BUILDERS = {"helper_mlp": _helper_mlp, "helper_mlp_where": _helper_mlp_where, "torch_mlp": _torch_mlp,
            "finn_mlp": _finn_mlp, "brevitas_mlp": _brevitas_mlp, "torch_cnv": _torch_cnv,
            "larq_cnv": _larq_cnv, "brevitas_cnv": _brevitas_cnv}


COMMITTED = Path(__file__).parent / "models"


def build_seeds(folder: Path = COMMITTED) -> dict[str, bytes]:
    """{name: serialized model}, exporting into folder what is not there yet."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for name, build in BUILDERS.items():
        path = folder / f"{name}.onnx"
        if not path.is_file():
            build(path)
        seeds[name] = path.read_bytes()
    return seeds
