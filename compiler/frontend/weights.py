"""Weight matrices as exact integers times one scale per output channel.

Every float32 is an integer times a power of two, so each row of a weight matrix has an exact
greatest common divisor g (a rational); the row is g times integers. A binary row (+-s) gives
+-1, a ternary one (0 and +-s) -1/0/+1, a 2-bit Brevitas row s * {-2..1}, and so on. bnnc takes
rows whose integers fit in MAX_BITS-bit two's complement; anything else (e.g. float weights
that no quantizer produced) is refused -- unless the user opts in to `quantize_rows`, which rounds
each row to a scale times `bits`-bit integers and says how far the weights moved.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

MAX_BITS = 8
LO, HI = -(1 << (MAX_BITS - 1)), (1 << (MAX_BITS - 1)) - 1


class NotIntegerWeights(ValueError):
    """Row `channel` needs integers beyond MAX_BITS bits; `inputs` are two positions that show it."""

    def __init__(self, channel: int, inputs: tuple[int, int]):
        super().__init__(channel, inputs)
        self.channel, self.inputs = channel, inputs


def integer_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, K) float32 -> (C, K) int8 integers n and (C,) Fraction scales g with w = g * n
    exactly. An all-zero row has scale 1."""
    w = np.asarray(w, dtype=np.float32)
    mag = np.abs(w)
    first = mag[:, :1]
    if np.all((mag == first) & (first != 0)):  # every row is +-s: the binary case, fast
        return np.where(w > 0, 1, -1).astype(np.int8), np.array([Fraction(float(s)) for s in first[:, 0]], dtype=object)
    mant, expo = np.frexp(w.astype(np.float64))  # w = mant * 2^expo, |mant| in [0.5, 1): 24 significant bits
    mant = np.rint(np.ldexp(mant, 24)).astype(np.int64)
    expo = expo.astype(np.int64) - 24
    ints = np.zeros(w.shape, dtype=np.int8)
    scales = np.empty(w.shape[0], dtype=object)
    for c in range(w.shape[0]):
        nz = np.flatnonzero(mant[c])
        if nz.size == 0:
            scales[c] = Fraction(1)
            continue
        low = int(expo[c, nz].min())
        shifts = expo[c, nz] - low
        if shifts.max() > 24:  # magnitudes 2^24 apart cannot share a MAX_BITS-bit scale
            raise NotIntegerWeights(c, _witnesses(mag[c], nz))
        scaled = mant[c, nz] << shifts  # exact: below 2^49
        g = int(np.gcd.reduce(np.abs(scaled)))
        n = scaled // g
        if n.min() < LO or n.max() > HI:
            raise NotIntegerWeights(c, _witnesses(mag[c], nz))
        ints[c, nz] = n
        scales[c] = Fraction(g) * Fraction(2) ** low
    return ints, scales


def _witnesses(mag: np.ndarray, nz: np.ndarray) -> tuple[int, int]:
    """The smallest and the largest nonzero magnitude of a row: together they need the bits."""
    return int(nz[np.argmin(mag[nz])]), int(nz[np.argmax(mag[nz])])


def quantize_rows(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(C, K) float weights -> (ints, Fraction scales, largest |w - scale * int|, the same relative
    to its row's largest |w|): per output
    channel, symmetric, scale = max|w| / (2**(bits-1) - 1), round half to even, then reduced by
    the row's common divisor -- so rows that are +-s up to float rounding (XNOR-Net's
    `w + (s*sign(w) - w).detach()`) come out binary. bits=1 binarizes: sign(w) * mean|w|."""
    w = np.asarray(w, dtype=np.float64)
    ints = np.zeros(w.shape, dtype=np.int64)
    scales = np.empty(w.shape[0], dtype=object)
    for c, row in enumerate(w):
        peak = float(np.abs(row).max())
        if peak == 0:
            scales[c] = Fraction(1)
            continue
        if bits == 1:
            ints[c] = np.where(row >= 0, 1, -1)
            scales[c] = Fraction(float(np.float32(np.abs(row).mean())))
            continue
        top = (1 << (bits - 1)) - 1
        scale = Fraction(peak) / top
        n = np.rint(row / float(scale)).astype(np.int64)
        g = int(np.gcd.reduce(np.abs(n))) or 1
        ints[c], scales[c] = n // g, scale * g
    change = np.abs(w - np.array([float(s) for s in scales])[:, None] * ints)
    peaks = np.abs(w).max(axis=1, initial=0.0)
    relative = float((change.max(axis=1, initial=0.0) / np.where(peaks > 0, peaks, 1.0)).max(initial=0.0))
    return ints.astype(np.int8), scales, float(change.max(initial=0.0)), relative
