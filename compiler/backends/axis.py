"""AXI4-Stream wrapper (`--wrap axis`): `bnnc_axis` around `bnnc_top`, with an AXI4-Lite status
block. Everything it needs comes from the build's manifest (its "hardware" part), so it does not
depend on how the Verilog backend is organised inside.

The top (templates/verilog/axis.v.j2) passes each bnnc_top transfer in the low bits of TDATA,
zero padded to whole bytes; a conv net's frame is several s_axis transfers (one pixel each, TLAST
on the last), a result is always one m_axis transfer. Register slices (bnnc_skid.v) sit on both
streams and bnnc_axil_status.v registers its outputs, so every AXI output is a flip-flop.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..diagnostics import BnncError
from ..resources import resource_dir
from .templating import environment
from .verilog import sources

TOP = "bnnc_axis"
PRIMITIVES = ("bnnc_skid.v", "bnnc_axil_status.v")  # hand-written, copied as they are
FILES = PRIMITIVES + (f"{TOP}.v",)  # in compile order
MAX_USER_BITS = 64
# The status block's register map (bnnc_axil_status.v): byte offsets.
REGISTERS = {"ID": 0x00, "VERSION": 0x04, "DESIGN": 0x08, "CONTROL": 0x0C, "FRAMES_IN": 0x10,
             "FRAMES_OUT": 0x14, "LAST_INTERVAL": 0x18, "LAST_LATENCY": 0x1C, "FRAMING_ERRORS": 0x20,
             "CYCLES_PER_FRAME": 0x24, "LATENCY": 0x28, "IN_BEATS": 0x2C}
ID = 0x424E4E43  # "BNNC"
VERSION = 0x00010000
# Clocks the register slices add to a frame's trip: one on each stream.
WRAP_LATENCY = 2


@dataclass(frozen=True)
class AxisView:
    in_note: str
    out_note: str
    in_beats: int
    in_msb: int  # of one bnnc_top input transfer
    in_tdata_msb: int
    in_tkeep_msb: int
    in_pad: int  # TDATA bits above the transfer
    in_slice_msb: int
    beat_msb: int
    beat_zero: str
    beat_one: str
    beat_last: str
    out_msb: int
    out_tdata_msb: int
    out_tkeep_msb: int
    out_keep_hex: str
    out_pad: int
    out_slice_msb: int
    user_bits: int
    tag_depth: int
    tag_aw: int
    tag_msb: int
    tag_full: str
    in_flight: int
    design_id: str
    cycles_per_frame: int
    latency: int


def byte_width(bits: int) -> int:
    """TDATA width for a transfer of `bits` bits: whole bytes."""
    return 8 * -(-bits // 8)


def design_id(rtl_dir: Path) -> int:
    """First 32 bits of the SHA-256 of the design's RTL, in compile order (the DESIGN register)."""
    h = hashlib.sha256()
    for path in sources(rtl_dir):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return int.from_bytes(h.digest()[:4], "big")


def frames_in_flight(hardware: dict) -> int:
    """Frames inside bnnc_top at once when it runs at full speed: a frame leaves `latency` clocks
    after it started and a new one starts every `cycles_per_frame`; two more cover the frame
    being handed on at either end."""
    return -(-hardware["latency_cycles"] // hardware["cycles_per_frame"]) + 2


def _beat_literal(value: int, bits: int) -> str:
    return f"{bits}'d{value}"


def axis_view(hardware: dict, rtl_dir: Path, user_bits: int = 0) -> AxisView:
    if not hardware["rtl"]["supported"]:
        raise BnncError(f"--wrap axis needs the Verilog backend, which cannot build this design: {hardware['rtl']['reason']}")
    if not 0 <= user_bits <= MAX_USER_BITS:
        raise BnncError(f"--tuser-bits {user_bits}: choose 0 (no TUSER) to {MAX_USER_BITS}")
    inp, out = hardware["input"], hardware["output"]
    if out["transfers_per_frame"] != 1:
        raise ValueError("the AXI4-Stream wrapper expects one output transfer per frame")
    in_w, out_w, beats = inp["width_bits"], out["width_bits"], inp["transfers_per_frame"]
    in_tdata, out_tdata = byte_width(in_w), byte_width(out_w)
    beat_bits = max(1, (beats - 1).bit_length())
    in_flight = frames_in_flight(hardware)
    tag_aw = max(1, (in_flight - 1).bit_length())
    in_note = (f"{inp['count']} x {inp['element']['type']} per frame in {beats} transfers of {in_w} bits "
               f"({inp['transfer']})" if beats > 1 else f"{inp['count']} x {inp['element']['type']} per frame, "
               f"one transfer of {in_w} bits")
    out_note = f"{out['count']} x {out['element']['type']} per frame, one transfer of {out_w} bits"
    return AxisView(
        in_note=in_note, out_note=out_note, in_beats=beats,
        in_msb=in_w - 1, in_tdata_msb=in_tdata - 1, in_tkeep_msb=in_tdata // 8 - 1, in_pad=in_tdata - in_w,
        in_slice_msb=in_w + 2 + user_bits - 1,
        beat_msb=beat_bits - 1, beat_zero=_beat_literal(0, beat_bits), beat_one=_beat_literal(1, beat_bits),
        beat_last=_beat_literal(beats - 1, beat_bits),
        out_msb=out_w - 1, out_tdata_msb=out_tdata - 1, out_tkeep_msb=out_tdata // 8 - 1,
        out_keep_hex=f"{(1 << out_tdata // 8) - 1:x}", out_pad=out_tdata - out_w, out_slice_msb=out_w + user_bits - 1,
        user_bits=user_bits, tag_depth=1 << tag_aw, tag_aw=tag_aw, tag_msb=32 + user_bits - 1,
        tag_full=f"{tag_aw + 1}'d{1 << tag_aw}", in_flight=in_flight,
        design_id=f"{design_id(rtl_dir):08x}", cycles_per_frame=hardware["cycles_per_frame"],
        latency=hardware["latency_cycles"])


def wrapper_files(rtl_dir: Path) -> tuple[str, ...]:
    """The wrapper's files in compile order, without the primitives the design's RTL has already
    (a registered conv design has bnnc_skid too): a module is defined once."""
    have = {path.name for path in sources(rtl_dir)}
    return tuple(name for name in FILES if name not in have)


def render(hardware: dict, rtl_dir: Path, user_bits: int = 0) -> dict[str, str]:
    """File name -> text, in compile order (after the RTL of `rtl_dir`)."""
    view = axis_view(hardware, rtl_dir, user_bits)
    folder = resource_dir("templates") / "verilog"
    files = {name: (folder / name).read_text() for name in PRIMITIVES if name in wrapper_files(rtl_dir)}
    header = f"// Generated by bnnc for the design with DESIGN id {view.design_id}. Do not edit.\n"
    files[f"{TOP}.v"] = environment().get_template("verilog/axis.v.j2").render(header=header, a=view)
    return files


def emit(hardware: dict, rtl_dir: Path, out_dir: Path, user_bits: int = 0) -> list[Path]:
    """Write the wrapper's Verilog into out_dir; returns the files in compile order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render(hardware, rtl_dir, user_bits).items():
        (out_dir / name).write_text(text, encoding="utf-8", newline="\n")
        written.append(out_dir / name)
    return written
