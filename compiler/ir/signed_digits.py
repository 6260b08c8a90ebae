"""Signed power-of-two digits: the constants a multiplier-free design multiplies by.

x * m with m = sum_t s_t * 2**e_t (s_t = +-1) is sum_t s_t * (x << e_t): shifts and adds, one
adder per digit after the first. An integer's canonical signed digits (CSD, the non-adjacent
form: no two nonzero digits next to each other) are the fewest of any signed-digit form, so
`digit_count` is how many terms a shift-add multiplier by that constant needs.

`nearest_signed_digits` rounds a rational to the nearest number with at most k such digits.
Its search rests on two facts about a nearest one, x*, of v in [2**m, 2**(m+1)):
  - x* is no farther from v than 2**m or 2**(m+1) are, so it lies in [2v/3, 4v/3], and a CSD
    number whose top digit is 2**e lies strictly between (2/3) 2**e and (4/3) 2**e: so e is m or m+1;
  - x* minus its top digit is a nearest number with at most k-1 digits to v minus that digit.
So trying e = m and e = m+1 at each of k levels (or stopping) meets every nearest number.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache


def signed_digits(n: int) -> list[tuple[int, int]]:
    """The canonical signed digits of the integer n: (sign, exponent) pairs, exponents ascending,
    with n == sum(sign * 2**exponent)."""
    digits, e = [], 0
    while n:
        if n & 1:
            d = 2 - (n & 3)  # n = 1 (mod 4): +1; n = 3 (mod 4): -1 -- leaves n divisible by 4
            digits.append((d, e))
            n -= d
        n >>= 1
        e += 1
    return digits


def digit_count(n: int) -> int:
    """Nonzero canonical signed digits of the integer n: the terms of a shift-add multiplier."""
    return len(signed_digits(n))


def value_digit_count(v: Fraction) -> int | None:
    """Nonzero signed digits of a dyadic rational (None for one that is not dyadic)."""
    v = Fraction(v)
    den = v.denominator
    return None if den & (den - 1) else digit_count(v.numerator)


def _floor_log2(v: Fraction) -> int:
    """m with 2**m <= v < 2**(m+1), for v > 0."""
    m = v.numerator.bit_length() - v.denominator.bit_length()
    return m - 1 if Fraction(2) ** m > v else m


def _candidates(v: Fraction, k: int, min_exp: int | None) -> set[Fraction]:
    """Every nearest number to v with at most k digits is among these (see the module's docstring)."""
    found = {Fraction(0)}
    if k == 0 or v == 0:
        return found
    sign = 1 if v > 0 else -1
    m = _floor_log2(abs(v))
    exps = {m, m + 1} if min_exp is None else {max(m, min_exp), max(m + 1, min_exp)}
    for e in exps:
        top = sign * Fraction(2) ** e
        found |= {top + rest for rest in _candidates(v - top, k - 1, min_exp)}
    return found


@lru_cache(maxsize=4096)
def nearest_signed_digits(value: Fraction, k: int, min_exp: int | None = None) -> Fraction:
    """The nearest number to `value` that is a sum of at most k signed powers of two (each at
    least 2**min_exp when given: min_exp=0 for integers); among equally near ones, the one with
    fewer digits, then the smaller magnitude."""
    if k < 0:
        raise ValueError(f"{k} digits")
    value = Fraction(value)
    return min(_candidates(value, k, min_exp),
               key=lambda c: (abs(value - c), value_digit_count(c), abs(c), c))


def nearest_integer_digits(n: int, k: int) -> int:
    """The nearest integer to n with at most k nonzero canonical signed digits (ties as above)."""
    return int(nearest_signed_digits(Fraction(int(n)), k, 0))
