"""Clock-exact timing of the Verilog backend's pipeline: frame interval, latency, FIFO depths.

The pipeline is a chain of units, each a few RTL modules that work as one:
  conv   sliding window (line buffer) -> matrix-vector unit (MVU), once per output pixel
  pool   sliding window -> max/min of the window, one output register (registered designs: a
         two-place register slice)
  gather collect a map's pixels into one vector -> MVU (a dense layer reading a map)
  dense  MVU on a whole vector;  argmax  one register
Maps travel one pixel per transfer, vectors one per transfer.

Every unit alone (input always there, output always taken) has a period per frame (`Unit.period`):
  MVU: C/PE * K/SIMD steps.  Window units: the window slides by d_j input pixels between output
  pixels j-1 and j and the MVU needs `steps` clocks per window, so the unit takes
  sum_j max(steps, d_j) clocks per frame (a pool: steps = 1). d_j is 1 along a row of a stride-1
  conv and larger at row ends, across frames, and for strides. The line buffer shifts one
  pixel per clock; after a frame's last pixel it shifts `tail` padding positions (bottom pad
  rows and right pad) so that the windows over the bottom padding complete without waiting
  for the next frame -- that is the only fill overhead.
  Gather + MVU: max(H*W, steps) (one pixel per clock; the MVU latches the vector, so the next
  frame is gathered while it computes).

The interval T of the whole pipeline is the largest unit period. A pacer at the input starts a
frame at most every T clocks, so that every unit keeps up. Neighbours still differ in when they
want their data within a frame (a pool emits only on every other row, a window unit wants
several pixels at once at a row end, ...): if a unit had to wait for room downstream at the
wrong moment, the pipeline would lose clocks; where that happens a FIFO goes between them.

This module replays the handshake rules of the RTL on every transfer of a few frames (an event
recursion per unit, not a clocked simulation), including units waiting for room downstream.
It sizes each FIFO as the smallest that keeps the interval at T (starting from the depth at
which no unit ever waits), and gives the latency of a frame. The pipeline then runs the
replayed schedule clock for clock; the tests check that against RTL simulation.

Times are rising clock edges; "offered at e" means the transfer can happen at edge e at the
earliest (valid in the cycle before).

Registered designs (Design.registered, `bnnc compile --registered`): every MVU registers its
datapath in `post_stages` stages after the step that reads the weights (its result reaches the
output `post_stages` edges later) and hands results on through a queue of `slots` registered
places. The last step of a vector waits for a free place -- counted from registers, one clock
before -- instead of for the output register to be taken in that very clock, so no unit's
in_ready depends on its out_ready. `slots` = ceil((post_stages + 2) / steps) is the fewest that
keeps one vector every `steps` clocks when the output is always taken.
"""
from __future__ import annotations

import weakref
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

from .hardware import Design, Layer, PoolLayer, Window
from .plan import Mode, plan, window_last_row

NEVER = -(1 << 60)  # an edge before everything


@dataclass(frozen=True)
class Unit:
    kind: str  # "conv", "pool", "gather", "dense" or "argmax"
    layer: Layer | PoolLayer | None  # a PoolLayer for pool, None for argmax, else a Layer
    steps: int  # MVU clocks per vector (1 for pool and argmax)
    window: Window | None  # conv and pool
    in_beats: int  # transfers per frame on the input
    out_beats: int
    post_stages: int = 0  # registered MVU: edges from its last step to the result in its queue
    slots: int = 0  # registered MVU: places in its output queue; 0: the plain output register
    out_slice: bool = False  # registered pool: its output register is a register slice (bnnc_skid)

    @property
    def positions(self) -> np.ndarray:
        assert self.window is not None, f"a {self.kind} unit has no window"
        return window_positions(self.window)

    @property
    def period(self) -> int:
        """Clocks per frame of this unit alone (see the module docstring)."""
        if self.kind in ("conv", "pool"):
            assert self.window is not None  # conv and pool units have one
            return int(np.maximum(self.steps, slides(self.window)).sum())
        if self.kind == "gather":
            return max(self.in_beats, self.steps)
        return self.steps


def window_positions(win: Window) -> np.ndarray:
    """For each output pixel (raster order), the raster position of its window's newest input
    pixel: the window is complete once that pixel is in the line buffer. Positions past the
    frame's last pixel (H*W - 1) lie in the bottom/right padding."""
    w = win.in_shape[2]
    rows = window_last_row(win, np.arange(win.out_hw[0]))
    cols = np.arange(win.out_hw[1]) * win.stride[1] - win.pads[1] + win.kernel[1] - 1
    return (rows[:, None] * w + cols[None, :]).ravel()


def window_tail(win: Window) -> int:
    """Padding positions shifted after the frame's last pixel (0 without bottom/right padding)."""
    h, w = win.in_shape[1:]
    return max(0, int(window_positions(win)[-1]) - (h * w - 1))


def line_pixels(kernel: tuple[int, int], width: int) -> int:
    """Pixels a sliding window's line buffer holds: KH - 1 rows of the map plus KW."""
    return (kernel[0] - 1) * width + kernel[1]


def slides(win: Window) -> np.ndarray:
    """d_j: line-buffer shifts from the previous window to window j, frames back to back."""
    n = window_positions(win)
    h, w = win.in_shape[1:]
    shifts_per_frame = h * w + window_tail(win)
    first = n[0] + shifts_per_frame - n[-1]
    return np.concatenate([[first], np.diff(n)])


def _is_map(layer) -> bool:
    return isinstance(layer, PoolLayer) or (isinstance(layer, Layer) and layer.window is not None)


PARTS_PER_CLOCK = 4  # registered: values one level of a lane's adder tree sums in a clock


def part_inputs(layer: Layer) -> int:
    """Registered: inputs per part of a lane's dot product, so that each part's tree fits one
    clock at about 100 MHz on an ECP5 (LUT4s, carry chains, routing about 1 ns per level; from
    nextpnr's critical paths): 12 one-bit terms (two 6-term counts and an adder), 8 masked ones
    (a term reads 3 bits), two integer terms, two products of multi-bit weights. Measured: parts
    of 24 one-bit terms were the critical path of the registered TFC (77.9 MHz) and, masked, of the
    digits CNV (88.6 MHz); four u8 terms per part that of the digits MLP (99.9 MHz)."""
    lp = plan(layer)
    if lp.weight_bits > 1:
        return 2
    return min({Mode.XNOR: 12, Mode.MASKED: 8}.get(lp.mode, 2), layer.simd)


# Registered layers with at least this many steps per vector keep their weights in a memory read
# synchronously into stage 1 (and registered again: input_stages), which Yosys (ECP5 DP16KD,
# Xilinx RAMB18/36) and Vivado map to block RAM. An ECP5 DP16KD is 512 words deep at 36 bits: with fewer steps most of
# each block would be empty, and a case-statement ROM of a few LUT levels is cheaper.
BLOCK_RAM_MIN_STEPS = 128


def layer_steps(layer: Layer) -> int:
    """A matrix-vector unit's clocks per vector: channel groups x input chunks."""
    return (layer.out_count // layer.pe) * (layer.in_count // layer.simd)


def weights_in_block_ram(layer: Layer) -> bool:
    return layer_steps(layer) >= BLOCK_RAM_MIN_STEPS


# Registered layers read a ROM of weights in blocks of up to this many weights of a lane, each
# with its own copy of the step address (verilog/layer.py, _weight_blocks).
WEIGHTS_PER_COPY = 64


def weight_blocks(layer: Layer) -> int:
    """Registered: the weight ROM's blocks (0: one step, constant weights, or a block RAM)."""
    if layer_steps(layer) == 1 or weights_in_block_ram(layer):
        return 0
    return layer.pe * -(-layer.simd // WEIGHTS_PER_COPY)


# Registered layers whose step reads at least this many weights (PE x SIMD) are wide enough that
# the routes into their lanes, not the logic, set the clock: the TFC's first layer at auto
# folding (16 x 784) placed at 83 MHz with 6.7-7.5 ns of routing from the stage-1 input and
# weight registers into its parts' dot products, spread over 64k logic cells; with the second
# stage, at 94.9 MHz (seed 1; the head's multiplier then limits it). Not smaller: the digits
# CNV's layer 1 (32 x 144) with it grew by 4k logic cells and lost 7 MHz (median of 3 seeds).
WIDE_STEP_WEIGHTS = 8192
LANES_PER_INPUT_COPY = 4  # a wide layer's stage-2 inputs: one copy per this many lanes


def wide_step(layer: Layer) -> bool:
    return layer.pe * layer.simd >= WIDE_STEP_WEIGHTS and not weights_in_block_ram(layer)


BLOCKS_PER_STEP_COPY = 16  # a wide step's weight blocks: a registered copy of `step` per (about) this many


def lanes_per_step_copy(layer: Layer) -> int:
    """Registered: the lanes whose weight blocks share a copy of `step` -- whole lanes, whose
    blocks the placer keeps together (a copy for blocks of two lanes of the TFC's layer 0 had a
    route of 8.9 ns: 99.3 MHz)."""
    return max(1, BLOCKS_PER_STEP_COPY // -(-layer.simd // WEIGHTS_PER_COPY))


def step_copies(layer: Layer) -> int:
    """Registered: copies of `step`, a clock late, that advance a wide step's weight blocks'
    addresses (0: the blocks read `step` itself). On the TFC at auto folding, `step` (one LUT of
    registers) into the enables of layer 0's 208 address copies was the critical path once its
    inputs and weights had their second stage: 7.6 ns of routing, 97.1 MHz."""
    if not wide_step(layer) or not weight_blocks(layer):
        return 0
    return -(-layer.pe // lanes_per_step_copy(layer))


# A wide step's input buffer loads in slices of this many bits, each with its own registered copy
# of the load enable (see load_copies).
BITS_PER_LOAD_COPY = 64


def load_copies(layer: Layer, buffer_bits: int) -> int:
    """Registered: copies of the input buffer's load enable (and, with chunks > 1, of its rotate
    enable), each a register set a clock ahead from the control's next state, so it equals
    in_ready (step) at every clock and the timing does not change (0: the buffer reads in_ready
    and step). On the TFC at auto folding, in_ready into the enables of layer 0's 784-bit buffer
    was the critical path in 2 of 3 placer seeds once the weight blocks had their step copies:
    7.1-7.2 ns of routing, 95.2-99.7 MHz."""
    return -(-buffer_bits // BITS_PER_LOAD_COPY) if wide_step(layer) else 0


def input_stages(layer: Layer) -> int:
    """Registered: stages of a step's inputs and weights before its parts' dot products. Two with
    a block RAM, whose output (5.6 ns from the clock on an ECP5 DP16KD, then a mux over the blocks
    of a deep memory) gets a register of its own: CNV-w1a1 at FINN's folding placed at 58.4 MHz
    with both in the parts' clock, at 74.2 MHz with the register. Two in a wide step, so that a
    clock of pure routing carries the inputs (in copies: input_copies) and weights to registers
    the placer can put beside the lanes; three when its weight blocks read the step a clock late
    (step_copies), the inputs waiting a clock beside them."""
    return 1 + int(registered_twice(layer)) + int(step_copies(layer) > 0)


def registered_twice(layer: Layer) -> bool:
    """Registered: the step's inputs and weights get a second register (a block RAM, a wide step)."""
    return weights_in_block_ram(layer) or wide_step(layer)


def input_copies(layer: Layer) -> int:
    """Registered: copies of the stage-2 inputs, each feeding up to LANES_PER_INPUT_COPY lanes."""
    return -(-layer.pe // LANES_PER_INPUT_COPY) if wide_step(layer) else 1


def sum_levels(layer: Layer) -> tuple[int, ...]:
    """Registered: the values at each level of a lane's adder tree, from its parts to the one
    chunk sum, each level summing PARTS_PER_CLOCK values of the one below in a clock. A single
    level summing them all (33 parts of the TFC's first layer) was the critical path at 60 MHz:
    ABC maps a wide sum into LUT levels rather than carry chains."""
    levels = [-(-layer.simd // part_inputs(layer))]
    while levels[-1] > 1 or len(levels) == 1:
        levels.append(-(-levels[-1] // PARTS_PER_CLOCK))
    return tuple(levels)


# Registered: a popcount of at most this many bits multiplies in LUTs, in the two clocks a
# multiplier block would take (4 terms a clock, as the adder tree: 16 terms).
LUT_MULTIPLY_MAX_BITS = 16


def lut_multiply_bits(layer: Layer) -> int:
    """Registered multiply-add of a popcount (XNOR layers: P in [0, K]): the popcount's bits, when
    the product is built in LUTs as the sum of mult << i over its set bits i; else 0 (a
    multiplier block). On the TFC at auto folding the head's MULT18X18D (3.9 ns inside, and
    3.0-3.7 ns of routing to and from its column in a design filling 75% of the part) was the
    critical path in all of 3 placer seeds (86.5-94.9 MHz)."""
    lp = plan(layer)
    if layer.post != "affine" or lp.mode != Mode.XNOR:
        return 0
    bits = min(layer.in_count.bit_length(), lp.acc.width)
    return bits if bits <= LUT_MULTIPLY_MAX_BITS else 0


def post_stages(layer: Layer) -> int:
    """Registered MVU: pipeline edges after a step -- the step's inputs and weights, the dot
    products of the chunk's parts, each level of their adder tree, the accumulated value, and
    for a post-op other than thresholds (a multiply-add) a register before the multiplier, its
    product and a register after it -- each a register (input_stages: the inputs and weights)."""
    tree = len(sum_levels(layer)) - 1
    return 1 + input_stages(layer) + tree + (1 if layer.post == "threshold" else 4)


def queue_slots(layer: Layer) -> int:
    return -(-(post_stages(layer) + 2) // layer_steps(layer))


def units(design: Design) -> list[Unit]:
    """The design's layers as pipeline units (a dense layer after a map gathers it first)."""
    out: list[Unit] = []
    map_in = design.in_order == "hwc"
    for layer in design.layers:
        if isinstance(layer, PoolLayer):
            h, w = layer.in_shape[1:]
            oh, ow = layer.out_shape[1:]
            win = Window(layer.in_shape, layer.kernel, layer.stride, (0, 0, 0, 0), 0, (oh, ow))
            out.append(Unit("pool", layer, 1, win, h * w, oh * ow, out_slice=design.registered))
        else:
            steps = layer_steps(layer)
            reg = (post_stages(layer), queue_slots(layer)) if design.registered else (0, 0)
            if layer.window is not None:
                h, w = layer.window.in_shape[1:]
                out.append(Unit("conv", layer, steps, layer.window, h * w, layer.vectors, *reg))
            elif map_in:
                pixels = out[-1].out_beats if out else design.in_count // design.in_shape[0]
                out.append(Unit("gather", layer, steps, None, pixels, 1, *reg))
            else:
                out.append(Unit("dense", layer, steps, None, 1, 1, *reg))
        map_in = _is_map(layer)
    if design.argmax:
        out.append(Unit("argmax", None, 1, None, 1, 1))
    return out


# ---- the event recursion. Each unit is a generator that maps the edges its inputs are offered
# at (`offer(t)`) and the edges its output register may take output t at (`room(t)`: output t-1
# has left) to the edges it takes its inputs (`takes`) and offers its outputs (`outs`). Either
# function returns None while the other unit has not got that far; the unit then yields.

def _wait(get, t):
    value = get(t)
    while value is None:
        yield
        value = get(t)
    return value


def _last_step(unit: Unit, room, f: int, earliest: int):
    """The edge of vector f's last step, `earliest` at the soonest. Plain: the output register
    must be free at that edge (output f-1 leaves at it at the latest). Registered: a queue place
    must be free in the clock before it (output f - slots has left by then)."""
    if not unit.slots:
        return max(earliest, (yield from _wait(room, f)))
    if f < unit.slots:
        return earliest
    return max(earliest, (yield from _wait(room, f - unit.slots + 1)) + 1)


def _offered(unit: Unit, room, f: int, last: int):
    """The edge output f can be taken at, its last step at edge `last`. Registered: it enters
    the queue `post_stages` edges later and waits there behind output f-1."""
    if not unit.slots:
        return last + 1
    return max(last + unit.post_stages, (yield from _wait(room, f))) + 1


def _window_unit(unit: Unit, offer, room, frames: int, takes: list, outs: list):
    """Line buffer + MVU (or + pool register). Mirrors templates/verilog/window.v.j2: a window
    is offered the clock after the shift that completes it; the buffer shifts again at the edge
    the window is taken at the earliest; after the frame's last pixel it shifts padding.
    Registered conv units: the window goes through a two-place register slice (bnnc_skid) to the
    MVU, which takes it a clock later at the earliest; the slice takes window j once window j-2
    has left it, an edge before (its in_ready is a register)."""
    n = [int(p) for p in unit.positions]
    hw = unit.in_beats
    sliced = unit.kind == "conv" and unit.slots > 0
    shifted = taken = free = NEVER  # last shift, last window taken, compute unit ready from
    mvu_takes: list[int] = []  # registered conv: the edges the MVU took each window from the slice
    pos, j, frame, t = -1, 0, 0, 0  # newest position in the buffer, next window, its frame, next input
    while frame < frames or t < frames * hw:
        if frame < frames and pos == n[j]:
            if sliced:
                take = max(shifted + 1, mvu_takes[-2] + 1 if len(mvu_takes) > 1 else NEVER)
                mvu_takes.append(max(take + 1, free))
                f = len(outs)
                done = yield from _last_step(unit, room, f, mvu_takes[-1] + unit.steps)
                outs.append((yield from _offered(unit, room, f, done)))
                free = done
            elif unit.kind == "conv":
                take = max(shifted + 1, free)
                f = len(outs)
                done = yield from _last_step(unit, room, f, take + unit.steps)  # it waits for room for the result
                outs.append((yield from _offered(unit, room, f, done)))
                free = done
            elif not unit.out_slice:  # the pool register takes a window once its previous output is leaving
                take = max(shifted + 1, free, (yield from _wait(room, len(outs))))
                outs.append(take + 1)
                free = take + 1
            else:  # registered pool: its output slice takes window f once output f-2 has left, an edge
                f = len(outs)  # before; output f leaves the slice's register after output f-1
                take = max(shifted + 1, free, (yield from _wait(room, f - 1)) + 1 if f else NEVER)
                outs.append(max(take, (yield from _wait(room, f))) + 1)
                free = take + 1
            taken = take
            j += 1
            if j == len(n):
                j, frame = 0, frame + 1
                pos = -1 if pos >= hw - 1 else pos - hw
            continue
        edge = max(shifted + 1, taken)
        if frame < frames and pos >= hw - 1:  # padding after the frame's last pixel
            shifted, pos = edge, pos + 1
            continue
        shifted = max(edge, (yield from _wait(offer, t)))
        takes.append(shifted)
        t, pos = t + 1, pos + 1


def _gather_unit(unit: Unit, offer, room, frames: int, takes: list, outs: list):
    """Pixels in one per clock; the full vector waits in the gather register until the MVU
    takes it, and the next frame's first pixel enters at that edge at the earliest."""
    last = handed = free = NEVER
    for f in range(frames):
        for p in range(unit.in_beats):
            last = max((yield from _wait(offer, len(takes))), last + 1, handed if p == 0 else NEVER)
            takes.append(last)
        handed = max(last + 1, free)
        free = yield from _last_step(unit, room, f, handed + unit.steps)
        outs.append((yield from _offered(unit, room, f, free)))


def _vector_unit(unit: Unit, offer, room, frames: int, takes: list, outs: list):
    """MVU: takes a vector when idle or in its last step; output offered after `steps` clocks.
    Argmax: one register, takes a vector every clock."""
    free = NEVER
    for f in range(frames):
        if unit.kind == "argmax":
            take = max((yield from _wait(offer, f)), free, (yield from _wait(room, f)))
            free = take + 1
            outs.append(take + 1)
        else:
            take = max((yield from _wait(offer, f)), free)
            free = yield from _last_step(unit, room, f, take + unit.steps)
            outs.append((yield from _offered(unit, room, f, free)))
        takes.append(take)


_SIMULATE = {"conv": _window_unit, "pool": _window_unit, "gather": _gather_unit,
             "dense": _vector_unit, "argmax": _vector_unit}


def _fifo_depth(offered: list[int], taken: list[int]) -> int:
    """Entries a link needs so that its upstream never waits: 0 if each output leaves the
    upstream's register before the next one is written; else the most outputs waiting at once
    behind the register (a fall-through FIFO adds no clock when it is empty)."""
    if all(r < o for r, o in zip(taken, offered[1:])):
        return 0
    return max(t - bisect_left(taken, o) for t, o in enumerate(offered)) + 1


@dataclass(frozen=True)
class Timing:
    units: tuple[Unit, ...]
    interval: int  # clocks between frame starts, in steady state (the pacer's interval)
    latency: int  # edges from a frame's first input transfer to its last output transfer, idle pipeline
    fifo_depths: tuple[int, ...]  # per link between consecutive units
    in_beats: int

    @property
    def paced(self) -> bool:
        """The pacer only matters when a frame could otherwise start sooner than `interval`."""
        return self.interval > self.in_beats


def _replay(chain: list[Unit], interval: int, frames: int, depths=None):
    """Every transfer of `frames` frames: (first input edge, each frame's last output edge,
    per link (outputs offered, inputs taken)). depths None: FIFOs never fill (no unit waits for
    room); else a link holds depths[i] words besides its unit's output register."""
    beats = chain[0].in_beats
    n = len(chain)
    takes: list[list[int]] = [[] for _ in chain]
    outs: list[list[int]] = [[] for _ in chain]

    def leaves(i, s):  # the edge output s of unit i leaves its register (None: not known yet)
        if s >= len(outs[i]):
            return None
        if depths is None:
            return outs[i][s]
        if depths[i] == 0:
            return takes[i + 1][s] if s < len(takes[i + 1]) else None
        if s < depths[i]:
            return outs[i][s]
        return max(outs[i][s], takes[i + 1][s - depths[i]] + 1) if s - depths[i] < len(takes[i + 1]) else None

    def source(t):  # the host offers the next beat once one is taken; frames start every interval
        if t == 0:
            return 0
        edge = takes[0][t - 1] + 1
        if t % beats == 0:
            edge = max(edge, takes[0][t - beats] + interval)
        return edge

    def offer(i):
        if i == 0:
            return source
        if depths is not None and depths[i - 1] == 0:  # straight from the register
            return lambda t: outs[i - 1][t] if t < len(outs[i - 1]) else None
        return lambda t: leaves(i - 1, t)  # a FIFO passes a word on when it leaves the register

    def room(i):
        if i == n - 1:
            return lambda t: NEVER  # the host always takes the output
        return lambda t: NEVER if t == 0 else leaves(i, t - 1)

    units = [_SIMULATE[u.kind](u, offer(i), room(i), frames, takes[i], outs[i]) for i, u in enumerate(chain)]
    running = list(range(n))
    while running:
        progress = False
        for i in list(running):
            before = len(takes[i]) + len(outs[i])
            try:
                next(units[i])
            except StopIteration:
                running.remove(i)
                progress = True
            progress = progress or len(takes[i]) + len(outs[i]) != before
        if not progress:
            raise RuntimeError("timing model: the units wait for each other")
    ends = outs[-1][chain[-1].out_beats - 1::chain[-1].out_beats]  # last output transfer of each frame
    return takes[0][0], ends, [(outs[i], takes[i + 1]) for i in range(n - 1)]


def _settled(chain, interval, depths, frames=4, most=64):
    """The replay over enough frames (from `frames`, doubling up to `most`) that the last ones
    are `interval` apart, with the number of frames it took; or None."""
    while frames <= most:
        first_in, ends, links = _replay(chain, interval, frames, depths)
        if len(ends) >= 3 and (np.diff(ends[-3:]) == interval).all():
            return (first_in, ends, links), frames
        frames *= 2
    return None


_TIMINGS: weakref.WeakKeyDictionary[Design, Timing] = weakref.WeakKeyDictionary()


def timing(design: Design) -> Timing:
    """The pipeline's timing and FIFO depths (computed once per design)."""
    if design not in _TIMINGS:
        _TIMINGS[design] = _timing(design)
    return _TIMINGS[design]


def _timing(design: Design) -> Timing:
    chain = units(design)
    interval = max(u.period for u in chain)
    settled = _settled(chain, interval, None)
    if settled is None:
        raise RuntimeError(f"timing model: design '{design.name}' does not settle to one frame every {interval} clocks")
    (_, _, links), frames = settled
    # FIFOs deep enough that no unit ever waits for room; then each as shallow as the interval
    # allows (a unit upstream of a slower one may as well wait: that costs nothing).
    depths = [_fifo_depth(o, r) for o, r in links]
    frames = max(8, 2 * frames)
    for i in range(len(depths)):
        lo, hi = 0, depths[i]
        while lo < hi:
            mid = lo if lo == 0 else (lo + hi) // 2  # most links need none: try that first
            if _settled(chain, interval, depths[:i] + [mid] + depths[i + 1:], frames, frames) is not None:
                hi = mid
            else:
                lo = mid + 1
        depths[i] = lo
    (first_in, ends, _), _ = _settled(chain, interval, depths, frames, frames)
    return Timing(units=tuple(chain), interval=interval, latency=ends[0] - first_in, fifo_depths=tuple(depths),
                  in_beats=chain[0].in_beats)
