"""Simulation harness for emitted RTL: the bench (bnnc_bench.v) driven by cocotb (tb_stream.py) or a
compiled C++ main (bench_main.cpp, native.py), the runner and lint."""
from .runner import SimResult, SimulationError, simulate

__all__ = ["SimResult", "SimulationError", "simulate"]
