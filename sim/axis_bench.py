"""cocotb bench of the AXI4-Stream wrapper `bnnc_axis`, driven by cocotbext-axi.

axis_runner.py writes `stimulus.json` into the test folder (frames as s_axis TDATA bytes, the
expected m_axis words, widths); this bench reads it and
  1. sends every frame through s_axis with random gaps while m_axis applies random back-pressure,
     checking each result word (and its zero padding, TKEEP, one transfer per TLAST and TUSER);
     optionally one frame goes in as two packets, with a TLAST in its middle;
  2. reads the AXI4-Lite status registers: ID, VERSION, frame counters, no framing errors;
  3. clears the counters, sends one frame into the idle pipeline (LAST_LATENCY must be the timing
     model's latency) and then frames back to back (LAST_INTERVAL must be its cycles per frame).
It writes what it saw to `results.json` for the runner.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

CLOCK_NS = 10


def _pauses(rng: random.Random, probability: float, longest: int):
    """A pause generator for cocotbext-axi: True = idle this clock."""
    while True:
        if rng.random() < probability:
            for _ in range(rng.randint(1, longest)):
                yield True
        yield False


class Bench:
    def __init__(self, dut, stim: dict):
        self.dut, self.stim = dut, stim
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk, dut.aresetn,
                                      reset_active_level=False)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk, dut.aresetn,
                                  reset_active_level=False)
        self.lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), dut.aclk, dut.aresetn,
                                  reset_active_level=False)
        self.registers = stim["registers"]

    async def reset(self):
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, 4)
        self.dut.aresetn.value = 1
        await ClockCycles(self.dut.aclk, 2)

    async def read(self, name: str) -> int:
        return await self.lite.read_dword(self.registers[name])

    def frame(self, index: int) -> AxiStreamFrame:
        tuser = index & ((1 << self.stim["user_bits"]) - 1) if self.stim["user_bits"] else None
        return AxiStreamFrame(bytes.fromhex(self.stim["frames"][index]), tuser=tuser)

    async def receive(self, index: int) -> str:
        """The next result; checks its transfer and returns its word (hex)."""
        try:  # a result that never comes (or never ends with TLAST) must fail, not hang
            frame = await with_timeout(self.sink.recv(compact=False), self.stim["limit_clocks"] * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"result {index}: nothing ending with TLAST within {self.stim['limit_clocks']} "
                                 f"clocks") from None
        size = self.stim["out_bytes"]
        assert len(frame.tdata) == size, (
            f"result {index}: {len(frame.tdata)} bytes before TLAST, expected one transfer of {size}")
        assert all(k == 1 for k in frame.tkeep), f"result {index}: TKEEP {frame.tkeep} is not all ones"
        word = int.from_bytes(bytes(frame.tdata), "little")
        assert word >> self.stim["out_bits"] == 0, f"result {index}: padding bits above {self.stim['out_bits']} are not 0"
        if self.stim["user_bits"]:
            want = index & ((1 << self.stim["user_bits"]) - 1)
            assert set(frame.tuser) == {want}, f"result {index}: TUSER {frame.tuser}, expected {want}"
        return f"{word:x}"

    async def checked_run(self, rng: random.Random) -> list[str]:
        self.source.set_pause_generator(_pauses(rng, 0.3, 4))
        if self.stim["backpressure"]:
            self.sink.set_pause_generator(_pauses(rng, 0.4, 3))
        for i in range(len(self.stim["frames"])):
            frame = self.frame(i)
            if i == self.stim["split_frame"]:  # TLAST in the middle of this frame: a framing error
                half = len(frame.tdata) // 2
                await self.source.send(AxiStreamFrame(frame.tdata[:half], tuser=frame.tuser))
                frame = AxiStreamFrame(frame.tdata[half:], tuser=frame.tuser)
            await self.source.send(frame)
        words = []
        for i in range(len(self.stim["frames"])):
            word = await self.receive(i)
            if self.stim["expected"] is not None and word != self.stim["expected"][i]:
                raise AssertionError(f"result {i} differs from the interpreter: got {word}, expected "
                                     f"{self.stim['expected'][i]}")
            words.append(word)
        for end in (self.source, self.sink):
            end.clear_pause_generator()
            end.pause = False  # stopping the generator can leave the last pause standing
        return words

    async def timing_run(self, frames: int) -> dict:
        await self.lite.write_dword(self.registers["CONTROL"], 1)
        await self.source.send(self.frame(0))
        await self.receive(0)
        latency = await self.read("LAST_LATENCY")
        for i in range(frames):
            await self.source.send(self.frame(i))
        for i in range(frames):
            await self.receive(i)
        return {"latency": latency, "interval": await self.read("LAST_INTERVAL"),
                "frames_out": await self.read("FRAMES_OUT")}


@cocotb.test()
async def axis_test(dut):
    stim = json.loads(Path("stimulus.json").read_text())
    cocotb.start_soon(Clock(dut.aclk, CLOCK_NS, unit="ns").start())
    bench = Bench(dut, stim)
    await bench.reset()
    rng = random.Random(stim["seed"])
    start = int(cocotb.utils.get_sim_time("ns")) // CLOCK_NS
    words = await bench.checked_run(rng)
    clocks = int(cocotb.utils.get_sim_time("ns")) // CLOCK_NS - start
    status = {name: await bench.read(name) for name in stim["registers"] if name != "CONTROL"}
    timing = await bench.timing_run(stim["timing_frames"])
    await RisingEdge(dut.aclk)
    Path("results.json").write_text(json.dumps({"outputs": words, "status": status, "timing": timing,
                                                "clocks": clocks}, indent=1))
