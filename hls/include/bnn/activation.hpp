// What follows a layer's dot product, per output channel c = nf * PE + pe.
//
// Each activation holds its per-channel constants as [PE][NF]... arrays (partition dimension 1
// completely, as the weights) and maps a finished dot product to an output code of out_width bits.
#pragma once

#include "compat.hpp"

namespace bnn {

// Integer multi-threshold: level = #{l : acc >= thresholds[c][l]}, output values[c][level].
// The values are output codes per channel, so any per-channel output alphabet works
// (bipolar signs, reversed signs for negative BatchNorm scales, ternary, small integers).
// Threshold is an ap_int wide enough for every threshold (the accumulator's range plus one).
template <int PE, int NF, int L, typename Threshold, int OUT_W>
struct ThresholdActivation {
  static constexpr int out_width = OUT_W;
  Threshold thresholds[PE][NF][L];
  ap_uint<OUT_W> values[PE][NF][L + 1];

  template <int ACC_W>
  ap_uint<OUT_W> activate(int pe, int nf, const ap_int<ACC_W>& acc) const {
#pragma HLS INLINE
    int level = 0;
    for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
      level += acc >= thresholds[pe][nf][l] ? 1 : 0;
    }
    return values[pe][nf][level];
  }
};

// Fixed-point affine: the output code is floor((acc * mult[c] + bias[c]) / 2^SHIFT) in OUT_W-bit
// two's complement (the binary point is the design's, stated in the config header). Mult and
// Bias are ap_ints sized by the compiler; the sum is exact modulo 2^(OUT_W + SHIFT), which is all
// the arithmetic shift and the narrowing to OUT_W bits read.
template <int PE, int NF, typename Mult, typename Bias, int OUT_W, int SHIFT = 0>
struct AffineActivation {
  static constexpr int out_width = OUT_W;
  Mult mult[PE][NF];
  Bias bias[PE][NF];

  template <int ACC_W>
  ap_uint<OUT_W> activate(int pe, int nf, const ap_int<ACC_W>& acc) const {
#pragma HLS INLINE
    const ap_int<OUT_W + SHIFT> y = acc * mult[pe][nf] + bias[pe][nf];
    return ap_uint<OUT_W>(ap_int<OUT_W>(y >> SHIFT));
  }
};

// No activation: the dot product itself is the output (an integer or fixed-point code).
template <int OUT_W>
struct PassActivation {
  static constexpr int out_width = OUT_W;

  template <int ACC_W>
  ap_uint<OUT_W> activate(int, int, const ap_int<ACC_W>& acc) const {
#pragma HLS INLINE
    static_assert(ACC_W == OUT_W, "the output carries the accumulator as it is");
    return ap_uint<OUT_W>(acc);
  }
};

}  // namespace bnn
