"""The HLS view of a residual layer (bnn/residual.hpp): the sign of its fixed-point input, the
shortcut taps, and the chain of fixed-point affines after the shortcut's add."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..diagnostics import BnncError
from .hardware import Layer, encode
from .hls_arrays import ElemView, braced, by_pe, cpp_int, digit_elem, digits_literal, elem_view, signed_width
from .plan import SignedDigits, input_sign_thresholds, shortcut_bits, signed_digit_format


@dataclass(frozen=True)
class ResidualView:
    """A residual layer's input sign and shortcut (bnn/residual.hpp)."""

    act_elem: ElemView  # what the matrix-vector unit reads: the sign of a window element
    code_width: int  # of a fixed-point input code
    masked: bool  # window elements carry an in-map bit above the code
    c_in: int
    levels: int
    threshold_type: str
    tap_width: int
    main_shift: int
    tap_shift: int
    sign_lines: list[str]  # thresholds, codes, tap channels of bnn::InputSign
    sum_width: int  # of the shortcut add
    post_type: str  # C++ type of the affines after the add (bnn::NoStage, AffineStage or Then)
    post_lines: list[str]  # its initializer


def _stages(layer: Layer, multiplier_free: int = 0) -> tuple[str, list[str]]:
    """The C++ type and initializer of the fixed-point affines after a residual layer's add
    (multiplier_free: with their multipliers as signed digits, bnn::DigitAffineStage)."""
    pe, nf = layer.pe, layer.out_count // layer.pe
    assert layer.shortcut is not None, "not a residual layer"
    stages = layer.shortcut.after
    if not stages:
        return f"bnn::NoStage<{layer.shortcut.sum_elem.bits}>", []
    types: list[str] = []
    inits: list[list[str]] = []
    for st in stages:
        neg = st.mult if st.neg_mult is None else st.neg_mult
        largest = max(abs(st.in_elem.lo), abs(st.in_elem.hi)) * max(int(np.abs(st.mult).max()), int(np.abs(neg).max()))
        if largest + int(np.abs(st.bias).max()) >= 1 << 62:
            raise BnncError(f"layer {layer.index}: an affine after the shortcut needs more than C simulation's "
                            f"64-bit arithmetic holds")
        per = lambda v: by_pe(np.broadcast_to(np.asarray(v, dtype=object).reshape(-1), (layer.out_count,)), pe)  # noqa: E731
        prelu = 'true' if st.neg_mult is not None else 'false'
        if multiplier_free:
            d = signed_digit_format(np.concatenate([st.mult, neg]), multiplier_free,
                                    f"layer {layer.index}'s stage {len(types)} after the shortcut")
            types.append(f"bnn::DigitAffineStage<{pe}, {nf}, {st.in_elem.bits}, {st.out_elem.bits}, {st.shift}, "
                         f"{prelu}, {d.terms}, {d.exp_bits}, ap_int<{signed_width(st.bias)}>>")
            inits.append(["{"] + braced(per(st.mult), digits_literal(d)) + braced(per(neg), digits_literal(d))
                         + braced(per(st.bias), cpp_int) + ["},"])
            continue
        types.append(f"bnn::AffineStage<{pe}, {nf}, {st.in_elem.bits}, {st.out_elem.bits}, {st.shift}, "
                     f"{prelu}, "
                     f"ap_int<{signed_width(np.concatenate([st.mult, neg]))}>, ap_int<{signed_width(st.bias)}>>")
        inits.append(["{"] + braced(per(st.mult), cpp_int) + braced(per(neg), cpp_int) + braced(per(st.bias), cpp_int)
                     + ["},"])
    post_type, lines = types[-1], inits[-1]
    for t, init in zip(reversed(types[:-1]), reversed(inits[:-1])):
        post_type = f"bnn::Then<{t}, {post_type}>"
        lines = ["{"] + init + lines + ["},"]
    return post_type, lines[1:-1]  # the template's braces are the outermost


def residual_view(layer: Layer, multiplier_free: int = 0, digits: SignedDigits | None = None) -> ResidualView:
    assert layer.window is not None and layer.act is not None and layer.shortcut is not None, "not a residual layer"
    c_in = layer.window.in_shape[0]
    thresholds = input_sign_thresholds(layer)
    act_elem = digit_elem(elem_view(layer.act.elem), digits)
    taps = layer.shortcut.taps
    tap_channel = np.full(layer.in_count, -1, dtype=np.int64)
    for t in taps:
        tap_channel[t * c_in:(t + 1) * c_in] = np.arange(c_in)
    lines = (braced(thresholds.tolist(), cpp_int) + braced(encode(layer.act.values, layer.act.elem).tolist(), cpp_int)
             + braced(tap_channel.tolist(), cpp_int))
    post_type, post_lines = _stages(layer, multiplier_free)
    return ResidualView(act_elem=act_elem, code_width=layer.in_elem.bits, masked=layer.act.masked, c_in=c_in,
                        levels=thresholds.shape[1], sum_width=layer.shortcut.sum_elem.bits, post_type=post_type,
                        post_lines=post_lines,
                        threshold_type=f"ap_int<{layer.in_elem.bits + 1}>",
                        tap_width=shortcut_bits(layer),
                        main_shift=layer.shortcut.main_shift, tap_shift=layer.shortcut.tap_shift, sign_lines=lines)
