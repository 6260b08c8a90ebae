"""The one test of "ready for hardware": which ops the lowering maps, on which values.

hardware.lower calls verify_hardware_form first, and the driver calls it after the pipeline
when it builds hardware, so a graph the passes could not bring into this form is refused with
the op that is in the way -- the lowering itself then only decides how, never whether.
"""
from __future__ import annotations

from ..ir.fixed_ops import Add, FixedAffine, SumPool
from ..ir.graph import Graph
from ..ir.ops import ArgMax, Conv, Dense, IRError, Op, Pool, Reshape, Threshold, Transpose
from ..ir.types import is_integer
from .residual_blocks import FIXED_POINT_LIMIT, flows_in_fixed_point

# A residual block's add, sum pool and fixed-point affines become part of one layer (residual_blocks.py).
HARDWARE_OPS = (Dense, Conv, Threshold, FixedAffine, Reshape, Transpose, ArgMax, Pool, SumPool, Add)


def verify_hardware_form(graph: Graph) -> None:
    """Raise IRError naming the op unless every op on the device side is one the hardware maps
    and every value it reads or makes is an integer code."""
    if len(graph.outputs) != 1:
        raise IRError("hardware needs exactly one graph output")
    device = [op for op in graph.ops if not graph.on_host(op)]
    if not any(isinstance(op, (Dense, Conv)) for op in device):
        raise IRError("the graph has no binary layer to build hardware for")
    for op in device:
        where = f"{op.kind} %{op.out} (from ONNX node '{op.origin}')"
        if not isinstance(op, HARDWARE_OPS):
            raise unmapped(graph, op)
        for value in (*op.inputs, op.out):
            elem = graph.types[value].elem
            if not is_integer(elem):
                raise IRError(f"{where} {'makes' if value == op.out else 'reads'} {elem} data; the folding passes "
                              f"could not make it integer")


def unmapped(graph: Graph, op: Op) -> IRError:
    """The error for an op the lowering cannot place: an unmapped kind here, or a mapped one in a
    position hardware.lower has no unit for."""
    where = f"{op.kind} %{op.out} (from ONNX node '{op.origin}')"
    if flows_in_fixed_point(graph):
        return IRError(f"{where}: {FIXED_POINT_LIMIT}")
    return IRError(f"{where} has no hardware mapping here; run the default pipeline first")
