"""Simulation harness for emitted RTL: cocotb testbench (tb_stream.py), runner and lint."""
from .runner import SimResult, SimulationError, simulate

__all__ = ["SimResult", "SimulationError", "simulate"]
