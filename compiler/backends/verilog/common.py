"""What every unit of the Verilog backend formats with: ROM tables, widths, packed constants,
part-selects and concatenations. All of it is arithmetic on Python ints; the templates only
place the resulting text."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ir.types import Bipolar, Element
from ..templating import verilog_literal as lit  # noqa: F401  (the units format their constants with it)


@dataclass(frozen=True)
class RomEntry:
    addr: str  # sized Verilog literal
    word: str
    note: str = ""  # the word's fields in decimal, for readers (small words only)


@dataclass(frozen=True)
class Rom:
    """A constant table read combinationally: `signal = table[select]`."""

    signal: str
    select: str
    msb: int
    entries: tuple[RomEntry, ...]

    @property
    def default(self) -> str:
        """The word for a select outside the table. With one entry the select never leaves its
        address, and the same word makes the table a constant to synthesis (a layer of one channel
        group read its thresholds through a LUT of the group register in front of every compare:
        nextpnr's critical path of the CNV's layer 1 at auto folding); else zero."""
        return self.entries[0].word if len(self.entries) == 1 else lit(0, self.msb + 1, "h")


def msb(width: int) -> int:
    return width - 1


def counter_bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


def pack_bits(bits01: np.ndarray) -> int:
    """A 0/1 vector -> integer, element 0 in the least significant bit (fast for big ROMs)."""
    return int.from_bytes(np.packbits(bits01.astype(np.uint8), bitorder="little").tobytes(), "little")


def elem_signed(elem: Element) -> bool:
    return not isinstance(elem, Bipolar) and bool(getattr(elem, "signed", False))


def part_select(signal: str, index: int, bits: int) -> str:
    """A constant part-select of element `index`."""
    lo = index * bits
    return f"{signal}[{lo}]" if bits == 1 else f"{signal}[{lo + bits - 1}:{lo}]"


def concat(parts: list[str], per_line: int = 0, indent: str = "") -> str:
    """Verilog concatenation with parts[0] in the least significant position; `per_line` > 0
    breaks it into lines of that many parts."""
    if len(parts) == 1:
        return parts[0]
    parts = list(reversed(parts))
    if not per_line or len(parts) <= per_line:
        return "{" + ", ".join(parts) + "}"
    lines = [", ".join(parts[i:i + per_line]) for i in range(0, len(parts), per_line)]
    return "{" + f",\n{indent} ".join(lines) + "}"


