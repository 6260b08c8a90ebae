"""The threshold-logic plan of a compiled graph: every layer fully unrolled, binary neurons mapped
to TLG networks by `map-threshold-logic`.

Why fully unrolled (PE = C, SIMD = K): an FTL cell's weights are programmed into the cell after
fabrication, so a TLG computes one fixed neuron's function. Folding would time-share a lane
between channels with different weights, which needs multiplexed weights in front of the cells
(TULIP's approach), not programmed ones. A conv layer still takes one output pixel per clock.
"""
from __future__ import annotations

from ...diagnostics import BnncError
from ...ir.graph import Graph
from ...ir.ops import IRError
from ...passes.threshold_logic import Mapping, MapThresholdLogic, ThresholdLogicError, parse
from ..hardware import Design, lower

UNROLLED: dict = {}  # a folding with no entry for a layer unrolls it fully


def tl_design(graph: Graph) -> Design:
    try:
        return lower(graph, UNROLLED)
    except IRError as exc:
        raise BnncError(str(exc)) from None


def tl_pass(text: str = "map-threshold-logic") -> MapThresholdLogic:
    """`map-threshold-logic{options}` as a pass; bad options are bad input."""
    try:
        return parse(text)
    except ThresholdLogicError as exc:
        raise BnncError(str(exc)) from None


def threshold_logic(graph: Graph, text: str = "map-threshold-logic") -> Mapping:
    """Run `map-threshold-logic{options}` on the fully unrolled hardware plan of `graph`."""
    return tl_pass(text).run(tl_design(graph))
