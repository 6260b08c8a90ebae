"""Where the templates, HLS kernels and simulation harness are, installed or from the source tree."""
from __future__ import annotations

from pathlib import Path


def resource_dir(name: str) -> Path:
    """`templates`, `hls` or `sim`: inside an installed wheel, else at the repository root."""
    packaged = Path(__file__).parent / "_data" / name
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[1] / name
    if source.is_dir():
        return source
    raise FileNotFoundError(f"bnnc resource folder '{name}' is missing from this installation")
