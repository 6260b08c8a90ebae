"""cocotb entry point of the bnnc test bench: runs the clock until bnnc_bench.v says it is done.

Everything clocked (driver, random gaps and back-pressure, scoreboard, timing) lives in the
Verilog bench, so a run costs simulator time rather than a Python callback per clock; runner.py
writes the bench's input files and interprets its results.
"""
from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

CLOCK_NS = 10


@cocotb.test()
async def stream_test(dut):
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    await RisingEdge(dut.done)
