// Multiplier-free designs (bnnc --multiplier-free K): every product by a constant is built from
// the constant's signed power-of-two digits, as shifts and adds. A constant is TERMS digits of
// EXP_W + 2 bits, digit t at bits [t*(EXP_W+2) +: EXP_W+2] = {nonzero, negative, exponent}
// (the compiler's plan.SignedDigits; templates/verilog/bnnc_shift_add.v is the same in RTL).
// Copied into a project only when the design is multiplier-free.
#pragma once

#include "activation.hpp"
#include "compat.hpp"
#include "element.hpp"
#include "matrix_vector.hpp"
#include "residual.hpp"

namespace bnn {

// x * m modulo 2^W: the sum of +-(x << exponent) over m's nonzero digits.
template <int TERMS, int EXP_W, int W>
ap_int<W> shift_add(const ap_int<W>& x, const ap_uint<TERMS * (EXP_W + 2)>& m) {
#pragma HLS INLINE
  static_assert(EXP_W + 2 <= 64, "a digit fits a host integer");
  ap_int<W> total = 0;
  for (int t = 0; t < TERMS; t++) {
#pragma HLS UNROLL
    const unsigned long long digit = field<EXP_W + 2>(m, t);
    ap_int<W> shifted = x;
    shifted <<= int(digit & ((1ull << EXP_W) - 1));
    if ((digit >> (EXP_W + 1)) & 1) {
      if ((digit >> EXP_W) & 1) {
        total -= shifted;
      } else {
        total += shifted;
      }
    }
  }
  return total;
}

// The input element Elem of a matrix-vector unit whose weight words hold signed digits: a weight
// is TERMS digits (WB = TERMS * (EXP_W + 2) bits) instead of a two's-complement integer, and
// each term of the dot product is shift_add(x, w) (matrix_vector picks the dot product by the
// element type; on the wire this is Elem).
template <typename Elem, int TERMS, int EXP_W>
struct DigitWeights {
  static constexpr int width = Elem::width;
};

template <typename Elem, int TERMS, int EXP_W, int SIMD, int WB, int ACC_W>
struct WeightedDot<DigitWeights<Elem, TERMS, EXP_W>, SIMD, WB, ACC_W> {
  static_assert(WB == TERMS * (EXP_W + 2), "a weight word holds SIMD weights of TERMS digits");
  static ap_int<ACC_W> of(const ap_uint<SIMD * Elem::width>& x, const ap_uint<SIMD * WB>& w) {
#pragma HLS INLINE
    ap_int<ACC_W> sum = 0;
    for (int i = 0; i < SIMD; i++) {
#pragma HLS UNROLL
      const ap_int<ACC_W> value = Elem::value(field<Elem::width>(x, i));
      sum += shift_add<TERMS, EXP_W>(value, ap_uint<WB>(field<WB>(w, i)));
    }
    return sum;
  }
};

// Zero-padded bipolar window elements: a padded lane adds nothing, the others +-w.
template <int TERMS, int EXP_W, int SIMD, int WB, int ACC_W>
struct WeightedDot<DigitWeights<MaskedBipolar, TERMS, EXP_W>, SIMD, WB, ACC_W> {
  static_assert(WB == TERMS * (EXP_W + 2), "a weight word holds SIMD weights of TERMS digits");
  static ap_int<ACC_W> of(const ap_uint<2 * SIMD>& x, const ap_uint<SIMD * WB>& w) {
#pragma HLS INLINE
    ap_int<ACC_W> sum = 0;
    for (int i = 0; i < SIMD; i++) {
#pragma HLS UNROLL
      const ap_int<ACC_W> one = x[2 * i] ? 1 : -1;
      if (x[2 * i + 1]) sum += shift_add<TERMS, EXP_W>(one, ap_uint<WB>(field<WB>(w, i)));
    }
    return sum;
  }
};

// AffineActivation with mult as signed digits: floor((acc * mult[c] + bias[c]) / 2^SHIFT) in
// OUT_W-bit two's complement, the product by shifts and adds modulo 2^(OUT_W + SHIFT) (all that
// the shift and the narrowing read).
template <int PE, int NF, int TERMS, int EXP_W, typename Bias, int OUT_W, int SHIFT = 0>
struct DigitAffineActivation {
  static constexpr int out_width = OUT_W;
  ap_uint<TERMS * (EXP_W + 2)> mult[PE][NF];
  Bias bias[PE][NF];

  template <int ACC_W>
  ap_uint<OUT_W> activate(int pe, int nf, const ap_int<ACC_W>& acc) const {
#pragma HLS INLINE
    ap_int<OUT_W + SHIFT> y = shift_add<TERMS, EXP_W>(ap_int<OUT_W + SHIFT>(acc), mult[pe][nf]);
    y += bias[pe][nf];
    return ap_uint<OUT_W>(ap_int<OUT_W>(y >> SHIFT));
  }
};

// AffineStage (after a residual layer's add) with mult and neg as signed digits.
template <int PE, int NF, int IN_W, int OUT_W, int SHIFT, bool PRELU, int TERMS, int EXP_W, typename Bias>
struct DigitAffineStage {
  static constexpr int out_width = OUT_W;
  ap_uint<TERMS * (EXP_W + 2)> mult[PE][NF];
  ap_uint<TERMS * (EXP_W + 2)> neg[PE][NF];
  Bias bias[PE][NF];

  ap_int<OUT_W> apply(int pe, int nf, const ap_int<IN_W>& x) const {
#pragma HLS INLINE
    const ap_uint<TERMS * (EXP_W + 2)> m = (PRELU && x < 0) ? neg[pe][nf] : mult[pe][nf];
    ap_int<OUT_W + SHIFT> y = shift_add<TERMS, EXP_W>(ap_int<OUT_W + SHIFT>(x), m);
    y += bias[pe][nf];
    return ap_int<OUT_W>(y >> SHIFT);
  }
};

}  // namespace bnn
