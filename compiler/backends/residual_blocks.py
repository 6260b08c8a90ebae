"""The graph forms hardware.lower builds in one piece: Bi-Real/ReActNet residual blocks whose
shortcut lies in the window of the conv in front of their add (one layer each), and sum pools,
which are 0/1-weight convs. Read only; hardware.py makes the layers."""
from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np

from ..ir.fixed_ops import Add, FixedAffine, SumPool
from ..ir.graph import Graph
from ..ir.ops import Conv, Op, Threshold


@dataclass(frozen=True)
class Block:
    """One residual block of the graph: x -> threshold -> conv -> fixed_affine (+) shortcut(x)."""

    threshold: Threshold
    conv: Conv
    post: FixedAffine
    add: Add
    taps: tuple[int, ...]
    main_shift: int
    tap_shift: int
    after: tuple[FixedAffine, ...]  # single-use fixed-point affines after the add (RPReLU)
    absorbed: tuple[str, ...]  # every op value the block's layer computes

    @property
    def out(self) -> str:
        return self.after[-1].out if self.after else self.add.out


def _single_use(graph: Graph, value: str) -> bool:
    return len(graph.consumers(value)) == 1 and value not in graph.outputs


def _identity_code(op: Op | None) -> TypeGuard[FixedAffine]:
    """A fixed-point affine that only relabels the binary point (an exact average's 1/4)."""
    return bool(isinstance(op, FixedAffine) and op.neg_mult is None and op.shift == 0
                and np.all(op.mult == 1) and np.all(op.bias == 0))


def _shortcut_taps(graph: Graph, conv: Conv, x: str, sc: str) -> tuple[tuple[int, ...], tuple[str, ...]] | None:
    """Kernel positions of the conv's window that hold the shortcut's inputs, and the ops of the
    shortcut path -- or None when the shortcut is not inside the window."""
    kh, kw = conv.weights.shape[2:]
    top, left = conv.pads[:2]
    out_hw = graph.types[conv.out].shape[1:]
    if sc == x:
        inside = conv.stride == (1, 1) and out_hw == graph.types[x].shape[1:] and top < kh and left < kw
        return ((top * kw + left,), ()) if inside else None
    rescale = graph.producer(sc)
    if not _identity_code(rescale):
        return None
    pool = graph.producer(rescale.inputs[0])
    if not (isinstance(pool, SumPool) and pool.inputs[0] == x and _single_use(graph, pool.out)
            and _single_use(graph, rescale.out)):
        return None
    (ph, pw), stride = pool.kernel, pool.stride
    if stride != conv.stride or graph.types[pool.out].shape[1:] != out_hw or top + ph > kh or left + pw > kw:
        return None
    return tuple((top + u) * kw + left + v for u in range(ph) for v in range(pw)), (pool.out, rescale.out)


def residual_blocks(graph: Graph) -> dict[str, Block]:
    """The residual blocks whose shortcut a conv layer can add from its own window, by the value
    of their threshold (where the block's layer starts)."""
    blocks: dict[str, Block] = {}
    for add in (op for op in graph.ops if isinstance(op, Add)):
        for side in (0, 1):
            post, sc = graph.producer(add.inputs[side]), add.inputs[1 - side]
            conv = graph.producer(post.inputs[0]) if isinstance(post, FixedAffine) else None
            th = graph.producer(conv.inputs[0]) if isinstance(conv, Conv) else None
            if not (isinstance(post, FixedAffine) and isinstance(conv, Conv) and isinstance(th, Threshold)
                    and th.integer and post.neg_mult is None
                    and all(_single_use(graph, v) for v in (th.out, conv.out, post.out))):
                continue
            x = th.inputs[0]
            found = _shortcut_taps(graph, conv, x, sc)
            if found is None or graph.types[x].shape[0] != conv.weights.shape[0]:
                continue
            taps, path = found
            readers = {op.out for op in graph.consumers(x)}
            if readers != {th.out, path[0] if path else add.out} or x in graph.outputs:
                continue  # x also flows elsewhere: the layer would swallow it
            after: list[FixedAffine] = []
            value = add.out
            while _single_use(graph, value) and isinstance(nxt := graph.consumers(value)[0], FixedAffine):
                after.append(nxt)
                value = nxt.out
            blocks[th.out] = Block(th, conv, post, add, taps, add.shifts[side], add.shifts[1 - side], tuple(after),
                                    (th.out, conv.out, post.out, add.out) + path + tuple(a.out for a in after))
            break
    return blocks


def sum_pools_as_convs(graph: Graph, keep: Container[str] = frozenset()) -> Graph:
    """A sum pool is the convolution whose weight is 1 from each channel to itself across the
    window and 0 elsewhere: the same sums, exactly, built by the weight-layer unit (0/1 weights
    multiply like ternary ones). A global one before a dense head is a conv over the whole map.
    Pools in `keep` (a residual layer's shortcut) stay."""
    ops = []
    for op in graph.ops:
        if isinstance(op, SumPool) and op.out not in keep:
            c = graph.types[op.inputs[0]].shape[0]
            weights = np.zeros((c, c) + tuple(op.kernel), dtype=np.int8)
            weights[np.arange(c), np.arange(c)] = 1
            op = Conv(op.out, op.inputs, weights=weights, stride=op.stride, pads=(0, 0, 0, 0), pad_value=0,
                      origin=op.origin)
        ops.append(op)
    return graph.with_ops(ops)


FIXED_POINT_LIMIT = ("the Verilog and HLS backends do not build fixed-point values between layers yet, except "
                     "inside one layer (its affine post-op, or a residual block x + f(x) whose shortcut lies in its "
                     "conv's window, as in Bi-Real Net and ReActNet); the compiled IR runs in the interpreter: "
                     "`bnnc verify MODEL --inputs X.npy --backends ''` or `bnnc inspect MODEL`")


def flows_in_fixed_point(graph: Graph) -> bool:
    """The graph carries fixed-point values between layers (what fold-fixed-point's QFX part
    makes): anything but a weight layer's own fused post-processing."""
    from ..passes.qfx import final

    return any(isinstance(op, Add) or (isinstance(op, FixedAffine) and not final(graph, op.out)) for op in graph.ops)
