"""The streaming pool bnnc_pool{i} (templates/verilog/pool.v.j2): per channel the max (or min)
of the window its bnnc_window{i} delivers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hardware import PoolLayer
from ..templating import sanitize
from .common import elem_signed, lit, msb, pack_bits


@dataclass(frozen=True)
class PoolView:
    module: str
    index: int
    origin: str
    elem: str
    c: int
    b: int
    kh: int
    kw: int
    taps: int
    in_msb: int
    out_msb: int
    keep_max: str
    all_max: bool
    all_min: bool
    signed: bool


def pool_view(layer: PoolLayer) -> PoolView:
    c = layer.in_shape[0]
    b = layer.elem.bits
    kh, kw = layer.kernel
    modes = np.asarray(layer.modes).reshape(-1)
    modes = np.broadcast_to(modes, (c,))
    return PoolView(module=f"bnnc_pool{layer.index}", index=layer.index,
                    origin=sanitize(layer.origin) if layer.origin else "", elem=str(layer.elem), c=c, b=b,
                    kh=kh, kw=kw, taps=kh * kw, in_msb=msb(kh * kw * c * b), out_msb=msb(c * b),
                    keep_max=lit(pack_bits(modes > 0), c, "h"), all_max=bool((modes > 0).all()),
                    all_min=bool((modes < 0).all()), signed=elem_signed(layer.elem))

