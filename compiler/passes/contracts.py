"""What a pass needs of the graph it is given and what it promises of the graph it returns.

Each pass lists `requires` and `ensures` (conditions below); run_pipeline checks both around
every pass, so a pipeline given in the wrong order, or a pass that breaks its promise, stops
with a message that names the pass and the op. A condition is a function of the graph that
returns None when it holds, else what breaks it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir.graph import Graph
from ..ir.ops import Conv, Dense, Op, Sign
from ..ir.types import Exact, Fixed, Int, Real, is_integer


def describe(op: Op) -> str:
    return f"{op.kind} %{op.out} (from ONNX node '{op.origin}')"


@dataclass(frozen=True)
class Condition:
    name: str  # what holds, in a few words
    broken_by: Callable[[Graph], str | None]  # None: holds; else the op that breaks it, and how


def _device_weight_layers(graph: Graph) -> list[Op]:
    return [op for op in graph.ops if isinstance(op, (Dense, Conv)) and not graph.on_host(op)]


def _first(ops, why: Callable[[Op], str]) -> str | None:
    op = next(iter(ops), None)
    return None if op is None else f"{describe(op)} {why(op)}"


def _reads_float(graph: Graph) -> str | None:
    return _first((op for op in _device_weight_layers(graph) if isinstance(graph.types[op.inputs[0]].elem, Real)),
                  lambda op: "reads float data")


def _reads_non_integer(graph: Graph) -> str | None:
    return _first((op for op in _device_weight_layers(graph) if not is_integer(graph.types[op.inputs[0]].elem)),
                  lambda op: f"reads {graph.types[op.inputs[0]].elem} data, not integer codes")


def _unfolded_sign(graph: Graph) -> str | None:
    """A sign on integer codes, or on an exact affine of them that nothing else reads."""
    from .fold_thresholds import absorbed_affine  # fold_thresholds imports this module

    def foldable(op: Op) -> bool:
        aff = absorbed_affine(graph, op)
        return is_integer(graph.types[(aff or op).inputs[0]].elem)
    return _first((op for op in graph.ops if isinstance(op, Sign) and foldable(op)),
                  lambda op: "is a sign that could be an integer threshold")


def _exact_on_codes(graph: Graph) -> str | None:
    """An op on the device that makes an exact value out of integer or fixed-point codes (an
    affine, a PReLU): hardware needs its result as a fixed-point code too."""
    def exact_on_codes(op: Op) -> bool:
        return (not graph.on_host(op) and isinstance(graph.types[op.out].elem, Exact)
                and all(isinstance(graph.types[v].elem, (Int, Fixed)) for v in op.inputs))
    return _first((op for op in graph.ops if exact_on_codes(op)), lambda op: "makes exact values from integer codes")


NO_FLOAT_INTO_LAYERS = Condition("no weight layer reads float data", _reads_float)
INTEGER_INTO_LAYERS = Condition("every weight layer reads integer codes", _reads_non_integer)
SIGNS_FOLDED = Condition("every sign on integer codes is an integer threshold", _unfolded_sign)
FIXED_POINT_ONLY = Condition("no exact arithmetic on integer or fixed-point codes is left", _exact_on_codes)


def check(pass_name: str, conditions, graph: Graph, when: str) -> None:
    """Raise PassError, naming the pass and the op, when a condition does not hold."""
    from .manager import PassError  # manager imports this module

    for condition in conditions:
        broken = condition.broken_by(graph)
        if broken:
            raise PassError(f"pass '{pass_name}' {when} that {condition.name}, but {broken}")
