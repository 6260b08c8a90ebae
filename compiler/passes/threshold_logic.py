"""map-threshold-logic: every binary neuron of the hardware plan as a network of threshold-logic
gates (TLGs), the cells of a threshold-logic ASIC (FTL: DESIGN.md section 7).

A TLG computes [sum_i w_i * x_i >= T] on bits x_i with small integer weights. A binary neuron
[popcount(xnor(x, w)) >= T] is one such function, but with fan-in K; cells have a few inputs, so
it is built exactly from small TLGs by the counter-tree construction:

  1. Every input is a literal (x_i, or NOT x_i where the weight is -1: a TLG absorbs an inverted
     input into its weight and threshold, so no inverter is built). With B the smallest width for
     which 2^B >= T and 2^B > K - T, the neuron is bit B of popcount + (2^B - T): the constant's
     binary digits join the bit heap, and the sum never reaches 2^(B+1).
  2. (n, m) counters reduce columns 0..B-1 to at most two bits each, earliest-arriving bits first.
     Counter bit j is one TLG: [sum x - sum_{l>j} 2^l y_l >= 2^j]; with fan-in <= 4 and
     |w| <= 2 that is the full adder (carry = [a+b+c >= 2], sum = [a+b+c-2*carry >= 1]).
  3. A carry-only chain of majority gates c_{j+1} = [a_j + b_j + c_j >= 2] gives the carry into
     column B, and the neuron is the OR of column B (sum bits below B are never needed).
Constants fold into thresholds, and a gate that depends on one input or none becomes a wire.

Zero-padded conv inputs (mode "masked": a pad contributes 0) use the same heap with weights 2 and
1: dot = sum 2*(m_i AND xnor_i) + sum NOT m_i - K, where m_i says input i is inside the map.
Multi-level thresholds (a ternary Sign(0) level) get one network per level; the output code is
picked from the levels by a few ordinary gates. Layers with integer inputs (the first layer on
pixels), ternary or multi-bit weights (also a grouped conv, whose weights outside a group are 0)
or an affine post-op (the scores) are not neurons: they stay CMOS.

Literals are ints: 2 * net + inverted. Net 0 is the constant 0 (so literal 1 is the constant 1),
nets 1..n_inputs the layer's inputs, then one net per gate.
"""
from __future__ import annotations

import heapq
import re
import time
from dataclasses import dataclass

import numpy as np

from ..backends.hardware import Design, Layer
from ..ir.types import Bipolar

FALSE, TRUE = 0, 1


class ThresholdLogicError(Exception):
    """Options the construction cannot honour."""


@dataclass(frozen=True)
class MapThresholdLogic:
    """The pass over a hardware Design (not the IR: it needs the layers' final weight rows).
    clocked: FTL cells are edge-triggered, so depth d is d pipeline stages and a signal that
    skips levels needs identity cells (counted, see LayerNetwork.identity_cells)."""

    name = "map-threshold-logic"
    max_fan_in: int = 4
    max_weight: int = 2
    clocked: int = 1

    def __post_init__(self):
        if self.counter_size() < 3:
            raise ThresholdLogicError(f"{self.name}: max-fan-in={self.max_fan_in}, max-weight={self.max_weight} "
                                      f"cannot build a 3:2 counter (needs fan-in >= 4 and |weight| >= 2)")

    def counter_size(self) -> int:
        """Largest n whose (n, m) counter fits: fan-in n + m - 1 and top weight 2^(m-1)."""
        best = 0
        for n in range(2, 64):
            m = n.bit_length()
            if n + m - 1 <= self.max_fan_in and (1 << (m - 1)) <= self.max_weight:
                best = n
        return best

    def __str__(self) -> str:
        return f"{self.name}{{max-fan-in={self.max_fan_in},max-weight={self.max_weight},clocked={self.clocked}}}"

    def run(self, design: Design) -> "Mapping":
        start = time.perf_counter()
        layers, kept = [], []
        for layer in design.layers:
            if not isinstance(layer, Layer):
                continue
            reason = cmos_reason(layer)
            if reason:
                kept.append((layer.index, reason))
            else:
                layers.append(map_layer(layer, self))
        return Mapping(self, tuple(layers), tuple(kept), time.perf_counter() - start)


_OPTION = re.compile(r"^map-threshold-logic(?:\{([^}]*)\})?$")


def parse(text: str) -> MapThresholdLogic:
    """`map-threshold-logic{max-fan-in=4,max-weight=2,clocked=1}` -> the pass."""
    m = _OPTION.match(text.strip())
    if not m:
        raise ThresholdLogicError(f"cannot parse '{text}' as map-threshold-logic{{options}}")
    kwargs = {}
    for item in filter(None, (m.group(1) or "").split(",")):
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in ("max_fan_in", "max_weight", "clocked") or not value.strip().isdigit():
            raise ThresholdLogicError(f"map-threshold-logic: bad option '{item.strip()}' "
                                      f"(max-fan-in=N, max-weight=N, clocked=0|1)")
        kwargs[key] = int(value)
    return MapThresholdLogic(**kwargs)


def cmos_reason(layer: Layer) -> str | None:
    """Why a layer stays CMOS, or None when its neurons become TLGs."""
    if not isinstance(layer.in_elem, Bipolar):
        return f"integer inputs ({layer.in_elem}): a multi-bit dot product, not a threshold of bits"
    if layer.post != "threshold":
        return f"{layer.post} post-op: multi-bit outputs, not a neuron"
    if not isinstance(layer.weight_elem, Bipolar):  # a 0 weight is no literal of the bit heap
        return f"{layer.weight_elem} weights: x*w products (a grouped conv's zeros), not a threshold of bits"
    return None


# ---- the network of one layer

@dataclass
class LayerNetwork:
    """All TLGs of one layer as arrays; gate g drives net n_inputs + 1 + g. Gate inputs are padded
    to the widest gate with net 0 (the constant 0) at weight 0."""

    layer: int
    origin: str
    mode: str  # "xnor" or "masked"
    in_count: int  # K
    n_inputs: int  # nets 1..n_inputs: the K bits, then (masked) the K in-map flags
    out_count: int
    levels: int
    gate_inputs: np.ndarray  # (G, F) nets
    gate_weights: np.ndarray  # (G, F)
    gate_fan_in: np.ndarray  # (G,) inputs actually used
    gate_thresholds: np.ndarray  # (G,)
    gate_levels: np.ndarray  # (G,) 1 + the latest input's level; inputs are level 0
    outputs: np.ndarray  # (C, L) literal of each neuron (channel, level)
    neuron_gates: np.ndarray  # (C, L, 2): [first, end) of the neuron's own gates
    dot_thresholds: np.ndarray  # (C, L): neuron (c, l) is [dot_c >= this]
    codes: np.ndarray  # (C, L + 1) output element value per number of levels reached

    @property
    def gates(self) -> int:
        return len(self.gate_thresholds)

    def net_levels(self) -> np.ndarray:
        return np.concatenate([np.zeros(1 + self.n_inputs, dtype=np.int64), self.gate_levels])

    @property
    def depth(self) -> int:
        return int(self.gate_levels.max(initial=0))

    @property
    def max_fan_in(self) -> int:
        return int(self.gate_fan_in.max(initial=0))

    def identity_cells(self) -> int:
        """Clocked cells: a signal consumed more than one level after it is made passes identity
        cells on the levels between (one chain per signal, shared by its consumers); every
        neuron output is delayed to the layer's depth so that a layer's outputs leave together."""
        levels = self.net_levels()
        last = np.zeros(len(levels), dtype=np.int64)
        used = self.gate_weights != 0
        np.maximum.at(last, self.gate_inputs[used], np.broadcast_to(self.gate_levels[:, None], used.shape)[used])
        outs = self.outputs.ravel()
        outs = outs[outs > TRUE] >> 1
        np.maximum.at(last, outs, self.depth + 1)
        gap = last - levels - 1
        gap[0] = 0
        return int(np.maximum(gap, 0).sum())

    def neuron_depth(self, c: int, level: int) -> int:
        lit = int(self.outputs[c, level])
        return int(self.net_levels()[lit >> 1]) if lit > TRUE else 0


class _Scratch:
    """Gates under construction (lists), numbered after `n_inputs` input nets of given levels."""

    def __init__(self, input_levels: list[int]):
        self.n_inputs = len(input_levels)
        self.input_levels = input_levels
        self.inputs: list[tuple[int, ...]] = []  # per gate: its input nets
        self.weights: list[tuple[int, ...]] = []
        self.thresholds: list[int] = []
        self.levels: list[int] = []

    def net_level(self, net: int) -> int:
        if net <= self.n_inputs:
            return self.input_levels[net - 1] if net else 0
        return self.levels[net - self.n_inputs - 1]


class _Builder:
    """Appends gates to a _Scratch, folding constants and trivial gates into wires."""

    def __init__(self, net: _Scratch, options: MapThresholdLogic):
        self.net = net
        self.fan_in, self.weight = options.max_fan_in, options.max_weight
        self.counter = options.counter_size()

    def level(self, lit: int) -> int:
        return self.net.net_level(lit >> 1) if lit > TRUE else 0

    def gate(self, terms, threshold: int) -> int:
        """[sum w * lit >= threshold] as a literal: a new gate, an input, or a constant."""
        weights: dict[int, int] = {}
        for lit, w in terms:
            if lit <= TRUE:  # a constant
                threshold -= w * lit
                continue
            if lit & 1:  # w * NOT x = w - w * x
                threshold -= w
                w = -w
            weights[lit >> 1] = weights.get(lit >> 1, 0) + w
        weights = {n: w for n, w in weights.items() if w}
        pos = sum(w for w in weights.values() if w > 0)
        neg = sum(w for w in weights.values() if w < 0)
        if threshold <= neg:
            return TRUE
        if threshold > pos:
            return FALSE
        if len(weights) == 1:
            (n, w), = weights.items()
            return 2 * n if w > 0 else 2 * n + 1
        nets = tuple(sorted(weights))
        ws = tuple(weights[n] for n in nets)
        if len(nets) > self.fan_in or max(map(abs, ws)) > self.weight:
            raise AssertionError(f"gate {ws} >= {threshold} breaks the cell limits")  # a construction bug
        net = self.net
        net.inputs.append(nets)
        net.weights.append(ws)
        net.thresholds.append(threshold)
        net.levels.append(1 + max(net.net_level(n) for n in nets))
        return 2 * (net.n_inputs + len(net.thresholds))

    def any_of(self, lits: list[int]) -> int:
        """OR of literals, as a tree of [sum >= 1] gates."""
        lits = [lit for lit in lits if lit != FALSE]
        while len(lits) > 1:
            lits.sort(key=self.level)
            group, lits = lits[:self.fan_in], lits[self.fan_in:]
            lits.append(self.gate([(lit, 1) for lit in group], 1))
        return lits[0] if lits else FALSE

    def neuron(self, terms, threshold: int) -> int:
        """[sum w * lit >= threshold] for any number of terms, by the counter tree."""
        if len(terms) <= self.fan_in and all(abs(w) <= self.weight for _, w in terms):
            return self.gate(terms, threshold)
        heap_bits: list[tuple[int, int]] = []  # (literal, column)
        for lit, w in terms:
            if w < 0:
                lit, w, threshold = lit ^ 1, -w, threshold - w
            for j in range(w.bit_length()):
                if w >> j & 1:
                    heap_bits.append((lit, j))
        top = sum(1 << j for _, j in heap_bits)
        if threshold <= 0:
            return TRUE
        if threshold > top:
            return FALSE
        b = 0
        while (1 << b) < threshold or (1 << b) <= top - threshold:
            b += 1
        offset = (1 << b) - threshold
        heap_bits += [(TRUE, j) for j in range(b) if offset >> j & 1]
        columns: list[list[tuple[int, int, int]]] = [[] for _ in range(b + 1)]  # heaps of (level, arrival, lit)
        for i, (lit, j) in enumerate(heap_bits):
            heapq.heappush(columns[j], (self.level(lit), i, lit))
        serial = len(heap_bits)  # ties in level are taken in order of arrival
        for j in range(b):
            col = columns[j]
            while len(col) > 2:
                take = [heapq.heappop(col)[2] for _ in range(min(self.counter, len(col)))]
                for k, out in enumerate(self.count(take)):
                    if j + k <= b and out != FALSE:  # columns above B are 0 on every input: the sum is < 2^(B+1)
                        heapq.heappush(columns[j + k], (self.level(out), serial, out))
                        serial += 1
        carry = FALSE
        for j in range(b):
            carry = self.gate([(lit, 1) for _, _, lit in columns[j]] + [(carry, 1)], 2)
        return self.any_of([lit for _, _, lit in columns[b]] + [carry])

    def count(self, lits: list[int]) -> list[int]:
        """An (n, m) counter: the binary digits of sum(lits), least significant first. Outputs in
        columns above B are still built when a lower digit needs them; unused ones are dropped."""
        m = len(lits).bit_length()
        outs = [FALSE] * m
        for j in reversed(range(m)):
            outs[j] = self.gate([(lit, 1) for lit in lits] + [(outs[l], -(1 << l)) for l in range(j + 1, m)], 1 << j)
        return outs


@dataclass
class _Template:
    """The network of one neuron shape over abstract input slots 1..S (all uninverted)."""

    slots: int
    inputs: np.ndarray  # (G, F) slot or template gate nets
    weights: np.ndarray
    thresholds: np.ndarray
    levels: np.ndarray
    output: int  # literal


def _arrays(scratch: _Scratch, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, weights) padded to `width`, thresholds and levels of the gates in `scratch`."""
    g = len(scratch.thresholds)
    inputs = np.zeros((g, width), dtype=np.int64)
    weights = np.zeros((g, width), dtype=np.int64)
    for i, (n, w) in enumerate(zip(scratch.inputs, scratch.weights)):
        inputs[i, :len(n)], weights[i, :len(w)] = n, w
    return inputs, weights, np.asarray(scratch.thresholds, dtype=np.int64), np.asarray(scratch.levels, dtype=np.int64)


def _template(slot_levels: list[int], terms, threshold: int, options: MapThresholdLogic) -> _Template:
    scratch = _Scratch(slot_levels)
    out = _Builder(scratch, options).neuron(terms, threshold)
    return _Template(len(slot_levels), *_arrays(scratch, options.max_fan_in), out)


def map_layer(layer: Layer, options: MapThresholdLogic) -> LayerNetwork:
    """The TLG network of a binary layer: one counter tree per (channel, threshold level).

    Neurons of a layer with the same threshold share one shape: the tree is built once over
    uninverted input slots and instantiated per neuron, where a -1 weight inverts its slot (the
    gates reading it flip that weight and move their threshold, as an inverted input does)."""
    mode = "masked" if layer.window is not None and layer.window.pad_value == 0 and any(layer.window.pads) else "xnor"
    k, c = layer.in_count, layer.out_count
    width = options.max_fan_in
    assert layer.thresholds is not None  # a threshold layer: cmos_reason keeps the others
    thresholds = np.broadcast_to(np.asarray(layer.thresholds, dtype=np.int64), (c, np.shape(layer.thresholds)[-1]))
    values = np.broadcast_to(np.asarray(layer.values, dtype=np.int64), (c, thresholds.shape[1] + 1))
    levels = thresholds.shape[1]
    n_inputs = k * (2 if mode == "masked" else 1)
    weights = np.asarray(layer.weights)
    parts = []  # (inputs, weights, thresholds, levels) blocks in gate order
    gates = 0
    if mode == "masked":  # a_i = m_i AND xnor(x_i, w): one per input and weight sign in use, shared
        shared = _Scratch([0] * n_inputs)
        builder = _Builder(shared, options)
        inside = {}
        for i in range(k):
            for w in (1, -1):
                if np.any(weights[:, i] == w):
                    inside[i, w] = builder.gate([(2 * (k + 1 + i), 1), (2 * (1 + i) + (w < 0), 1)], 2)
        parts.append(_arrays(shared, width))
        gates = len(shared.thresholds)
        slot_levels = [1] * k + [0] * k
        slot_terms = [(2 * (1 + i), 2) for i in range(k)] + [(2 * (k + 1 + i), 1) for i in range(k)]
    else:
        slot_levels = [0] * k
        slot_terms = [(2 * (1 + i), 1) for i in range(k)]
    templates: dict[int, _Template] = {}
    outputs = np.zeros((c, levels), dtype=np.int64)
    spans = np.zeros((c, levels, 2), dtype=np.int64)
    slot_net = np.zeros(len(slot_levels) + 1, dtype=np.int64)
    slot_inv = np.zeros(len(slot_levels) + 1, dtype=bool)
    for ch in range(c):
        row = weights[ch]
        if mode == "xnor":  # slot i = xnor(x_i, w_i): x_i, inverted where w_i = -1
            slot_net[1:] = np.arange(1, k + 1)
            slot_inv[1:] = row < 0
        else:  # slot i = a_i (a shared gate), slot K + i = NOT m_i
            slot_net[1:k + 1] = [(inside[i, int(w)] >> 1) for i, w in enumerate(row)]
            slot_net[k + 1:] = np.arange(k + 1, 2 * k + 1)
            slot_inv[1:k + 1], slot_inv[k + 1:] = False, True
        for lv in range(levels):
            t = int(thresholds[ch, lv])
            # xnor: dot = 2P - K >= t <=> P >= ceil((t + K) / 2); masked: sum 2 a_i + sum NOT m_i >= t + K
            key = -((-(t + k)) // 2) if mode == "xnor" else t + k
            if key not in templates:
                templates[key] = _template(slot_levels, slot_terms, key, options)
            tpl = templates[key]
            base = n_inputs + 1 + gates  # the template's first gate becomes this net
            is_slot = tpl.inputs <= tpl.slots
            nets = np.where(is_slot, slot_net[np.minimum(tpl.inputs, tpl.slots)], tpl.inputs - tpl.slots - 1 + base)
            flip = is_slot & slot_inv[np.minimum(tpl.inputs, tpl.slots)]
            parts.append((nets, np.where(flip, -tpl.weights, tpl.weights),
                          tpl.thresholds - np.where(flip, tpl.weights, 0).sum(1), tpl.levels))
            out = tpl.output
            if out > TRUE and (out >> 1) <= tpl.slots:
                out = 2 * int(slot_net[out >> 1]) + ((out & 1) ^ int(slot_inv[out >> 1]))
            elif out > TRUE:
                out = 2 * ((out >> 1) - tpl.slots - 1 + base) + (out & 1)
            outputs[ch, lv] = out
            spans[ch, lv] = gates, gates + len(tpl.thresholds)
            gates += len(tpl.thresholds)
    cat = [np.concatenate([p[i] for p in parts]) if parts else np.zeros((0, width) if i < 2 else 0, dtype=np.int64)
           for i in range(4)]
    return LayerNetwork(layer.index, layer.origin, mode, k, n_inputs, c, levels, cat[0], cat[1],
                        (cat[1] != 0).sum(1), cat[2], cat[3], outputs, spans, thresholds.copy(), values.copy())


@dataclass(frozen=True)
class Mapping:
    options: MapThresholdLogic
    layers: tuple  # of LayerNetwork
    cmos: tuple  # (layer index, why it stays CMOS)
    seconds: float

    def network(self, index: int) -> LayerNetwork | None:
        return next((n for n in self.layers if n.layer == index), None)


# ---- evaluation: the meaning of a network, for checking it against its neurons

def evaluate(net: LayerNetwork, bits: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """(N, K) input bits (and in-map flags) -> (N, C, L) neuron outputs, gate by gate, one
    numpy step per level (gates padded to the widest with net 0 at weight 0)."""
    n = len(bits)
    values = np.zeros((1 + net.n_inputs + net.gates, n), dtype=np.int32)
    values[1:1 + net.in_count] = bits.T
    if net.mode == "masked":
        assert inside is not None, "a masked network reads the in-map flags"
        values[1 + net.in_count:1 + 2 * net.in_count] = inside.T
    if net.gates:
        ins, ws, thr, lvl = net.gate_inputs, net.gate_weights.astype(np.int32), net.gate_thresholds, net.gate_levels
        for level in range(1, net.depth + 1):
            sel = np.flatnonzero(lvl == level)
            sums = np.einsum("gf,gfn->gn", ws[sel], values[ins[sel]])
            values[1 + net.n_inputs + sel] = sums >= thr[sel, None]
    lits = net.outputs.ravel()
    out = values[lits >> 1] ^ (lits & 1)[:, None]
    return out.T.reshape(n, net.out_count, net.levels).astype(bool)


def reference(net: LayerNetwork, weights: np.ndarray, bits: np.ndarray, inside: np.ndarray | None = None) -> np.ndarray:
    """The neurons themselves: (N, C, L) = [dot_c >= t_{c,l}], pads adding 0."""
    x = 2 * bits.astype(np.int64) - 1
    if inside is not None:
        x = x * inside
    dot = x @ np.asarray(weights, dtype=np.int64).T
    return dot[:, :, None] >= net.dot_thresholds[None]


def check_layer(net: LayerNetwork, layer: Layer, random: int = 64, seed: int = 0) -> int:
    """Compare a layer's network with its neurons on each neuron's boundary inputs (dot product
    at t - 1, t and t + 1 where reachable) and random ones; returns the vectors checked, raises
    AssertionError naming the first neuron that differs."""
    rng = np.random.default_rng(seed)
    k = net.in_count
    weights = np.asarray(layer.weights)
    bit_rows, inside_rows = [rng.integers(0, 2, (random, k))], [rng.integers(0, 2, (random, k))]
    for ch in range(net.out_count):
        for t in net.dot_thresholds[ch]:
            for target in (t - 1, t, t + 1):
                m = rng.integers(0, 2, k) if net.mode == "masked" else np.ones(k, dtype=np.int64)
                m[rng.integers(0, k)] = 1
                n_in = int(m.sum())
                if (target + n_in) % 2 or abs(target) > n_in:
                    continue  # a dot product of this parity is not reachable
                agree = (target + n_in) // 2
                pos = rng.permutation(np.flatnonzero(m))
                x = np.where(weights[ch] > 0, 0, 1)  # disagree everywhere ...
                x[pos[:agree]] = (weights[ch][pos[:agree]] > 0)  # ... but at `agree` inside positions
                bit_rows.append(x[None])
                inside_rows.append(m[None])
    bits, inside = np.concatenate(bit_rows), np.concatenate(inside_rows)
    if net.mode != "masked":
        inside = np.ones_like(inside)
    got = evaluate(net, bits, inside if net.mode == "masked" else None)
    want = reference(net, weights, bits, inside)
    bad = np.argwhere(got != want)
    if len(bad):
        s, ch, lv = map(int, bad[0])
        raise AssertionError(f"layer {net.layer}: TLG network of channel {ch} level {lv} differs from the neuron "
                             f"on vector {s} ({len(bad)} differences)")
    return len(bits)
