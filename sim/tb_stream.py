"""cocotb testbench for a bnnc streaming top (`bnnc_top`): driver, monitor, scoreboard, timing.

Configured by the JSON file named in $BNNC_TB_CONFIG (written by runner.py): vectors are hex words
(element i at bits [i*w +: w]), one per line.

The bench is cycle based: on every falling edge the driver and the monitor set their outputs
(in_valid/in_data, out_ready), then, once the design has settled (ReadOnly), they note which
transfers the next rising edge will make. One loop calls them in a fixed order, so a run is
deterministic for a given seed.

Phase 1 (checked): random input gaps and, unless disabled, random back-pressure on out_ready.
Phase 2 (timing): the first vectors again from an idle pipeline, no gaps, out_ready held high;
it measures the latency of the first frame and the steady-state clocks per frame.
"""
from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

CLOCK_NS = 10


def _words(path: str | None) -> list[int] | None:
    if path is None:
        return None
    with open(path) as f:
        return [int(line, 16) for line in f.read().split()]


class Driver:
    """Offers one vector at a time on in_*; holds it until in_ready takes it."""

    def __init__(self, dut, words: list[int], rng: random.Random, gaps: bool):
        self.dut, self.words, self.rng, self.gaps = dut, words, rng, gaps
        self.sent = 0
        self.idle_left = 0
        self.fire_cycles: list[int] = []

    def drive(self) -> None:
        offering = self.sent < len(self.words) and self.idle_left == 0
        self.dut.in_valid.value = int(offering)
        if offering:
            self.dut.in_data.value = self.words[self.sent]

    def sample(self, cycle: int) -> None:
        if self.idle_left:
            self.idle_left -= 1
        elif int(self.dut.in_valid.value) and int(self.dut.in_ready.value):
            self.fire_cycles.append(cycle)
            self.sent += 1
            if self.gaps and self.rng.random() < 0.3:
                self.idle_left = self.rng.randint(1, 4)

    @property
    def done(self) -> bool:
        return self.sent == len(self.words)


class Monitor:
    """Takes outputs from out_*, toggling out_ready at random under back-pressure."""

    def __init__(self, dut, rng: random.Random, backpressure: bool, scoreboard: "Scoreboard"):
        self.dut, self.rng, self.backpressure, self.scoreboard = dut, rng, backpressure, scoreboard
        self.fire_cycles: list[int] = []

    def drive(self) -> None:
        self.dut.out_ready.value = int(not self.backpressure or self.rng.random() < 0.6)

    def sample(self, cycle: int) -> None:
        if int(self.dut.out_valid.value) and int(self.dut.out_ready.value):
            self.fire_cycles.append(cycle)
            self.scoreboard.check(self.dut.out_data.value.to_unsigned())


class Scoreboard:
    """Compares outputs, in order, with the expected words; keeps what it saw."""

    def __init__(self, expected: list[int] | None, out_count: int, out_bits: int, phase: str):
        self.expected, self.count, self.bits, self.phase = expected, out_count, out_bits, phase
        self.received: list[int] = []

    def check(self, word: int) -> None:
        index = len(self.received)
        self.received.append(word)
        if self.expected is None:
            return
        assert index < len(self.expected), f"{self.phase}: unexpected extra output #{index}: {word:#x}"
        want = self.expected[index]
        if word != want:
            mask = (1 << self.bits) - 1
            element = next(i for i in range(self.count) if (word >> (i * self.bits)) & mask != (want >> (i * self.bits)) & mask)
            got_e, want_e = (word >> (element * self.bits)) & mask, (want >> (element * self.bits)) & mask
            raise AssertionError(f"{self.phase}: output mismatch at vector {index}, element {element}: "
                                 f"code {got_e:#x}, expected {want_e:#x}")


async def _reset(dut) -> None:
    dut.rst.value = 1
    dut.in_valid.value = 0
    dut.out_ready.value = 0
    dut.in_data.value = 0
    for _ in range(4):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _run_phase(dut, words, expected, cfg, rng, gaps, backpressure, phase, limit, start_cycle):
    scoreboard = Scoreboard(expected, cfg["out_count"], cfg["out_bits"], phase)
    driver = Driver(dut, words, rng, gaps)
    monitor = Monitor(dut, rng, backpressure, scoreboard)
    cycle = start_cycle
    while len(scoreboard.received) < len(words):
        await FallingEdge(dut.clk)
        cycle += 1
        assert cycle - start_cycle <= limit, (
            f"{phase}: timeout after {limit} clocks with {driver.sent} of {len(words)} vectors sent and "
            f"{len(scoreboard.received)} outputs received")
        driver.drive()
        monitor.drive()
        await ReadOnly()
        driver.sample(cycle)
        monitor.sample(cycle)
    return driver, monitor, scoreboard, cycle


@cocotb.test()
async def stream_test(dut):
    with open(os.environ["BNNC_TB_CONFIG"]) as f:
        cfg = json.load(f)
    words, expected = _words(cfg["inputs"]), _words(cfg["expected"])
    rng = random.Random(cfg["seed"])
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    await _reset(dut)

    # Generous: every frame may wait out input gaps and a fully stalled output several times over.
    per_frame = cfg["cycles_per_frame"] + 8
    limit = cfg["latency"] + 64 + len(words) * per_frame * (6 if cfg["backpressure"] else 3)
    driver, monitor, board, cycle = await _run_phase(
        dut, words, expected, cfg, rng, gaps=True, backpressure=cfg["backpressure"],
        phase="checked run", limit=limit, start_cycle=0)
    cycles = monitor.fire_cycles[-1] - driver.fire_cycles[0] + 1 if words else 0
    with open(cfg["outputs"], "w") as f:
        f.write("".join(f"{w:x}\n" for w in board.received))

    n = cfg["timing_frames"]
    timing = {"cycles": cycles, "cycles_per_frame": None, "latency": None}
    if n:
        limit = cfg["latency"] + 64 + n * per_frame
        t_driver, t_monitor, _, _ = await _run_phase(
            dut, words[:n], expected[:n] if expected else None, cfg, rng, gaps=False, backpressure=False,
            phase="timing run", limit=limit, start_cycle=cycle)
        outs = t_monitor.fire_cycles
        timing["latency"] = outs[0] - t_driver.fire_cycles[0]
        timing["cycles_per_frame"] = (outs[-1] - outs[0]) / (n - 1) if n > 1 else None
    with open(cfg["timing"], "w") as f:
        json.dump(timing, f)
