"""User-facing errors: one line that names the ONNX node or tensor and says what is wrong."""
from __future__ import annotations

import sys


class BnncError(Exception):
    """Bad input or an unsupported model. The CLI prints the message alone and exits 2."""


def quote(name: str) -> str:
    """A model-supplied name made safe for a one-line message (no control characters)."""
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in str(name))
    return f"'{text[:120]}{'...' if len(text) > 120 else ''}'"


def node_label(node, index: int) -> str:
    """How messages name an ONNX node: its name, else its type, position and first output."""
    if node.name:
        return f"node {quote(node.name)} ({node.op_type})"
    out = node.output[0] if node.output else "?"
    return f"node #{index} {node.op_type} -> {quote(out)}"


def number(value) -> str:
    """A number as a user reads it: plain digits, never np.float32(...); +0 and -0 are 'zero'."""
    if value == 0:
        return "zero"
    text = str(value)  # numpy scalars print their shortest round-trip digits, e.g. 0.1 for float32
    return text[:-2] if text.endswith(".0") else text


def progress(message: str) -> None:
    """Progress for anything slow goes to stderr, so stdout stays machine-readable."""
    sys.stderr.write(f"[bnnc] {message}\n")  # one write, so lines from parallel jobs do not interleave
    sys.stderr.flush()
