"""bnnc: compile binarized neural networks (ONNX) to Verilog and HLS C++, proven bit-exact.

The library API (see api.py): `bnnc.compile`, `bnnc.run`, `bnnc.verify`; errors raise `BnncError`.
"""
from .api import BackendCheck, Build, Verification, compile, run, verify  # noqa: F401
from .diagnostics import BnncError  # noqa: F401

__all__ = ["compile", "run", "verify", "Build", "BackendCheck", "Verification", "BnncError"]
