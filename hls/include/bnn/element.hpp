// How one element of a vector is encoded, and where it sits in a packed word.
//
// The encodings are those of compiler/backends/hardware.py:
//   Bipolar      1 bit b meaning 2b - 1
//   Signed<W>    W-bit two's complement (ternary values are Signed<2>; fixed point carries its code)
//   Unsigned<W>  W-bit binary
// Element i of a packed word sits at bits [i*W +: W], element 0 in the least significant bits.
#pragma once

#include "compat.hpp"

namespace bnn {

struct Bipolar {
  static constexpr int width = 1;
  typedef ap_int<2> value_type;
  static value_type value(const ap_uint<1>& code) { return code[0] ? value_type(1) : value_type(-1); }
  static bool holds(long long v) { return v == -1 || v == 1; }
  static ap_uint<1> code(long long v) { return ap_uint<1>(v > 0 ? 1 : 0); }
};

template <int W>
struct Signed {
  static_assert(W >= 1 && W <= 63, "element widths stay within host integers");
  static constexpr int width = W;
  typedef ap_int<W> value_type;
  static value_type value(const ap_uint<W>& code) { return value_type(code); }  // same bits
  static bool holds(long long v) { return v >= -(1LL << (W - 1)) && v < (1LL << (W - 1)); }
  static ap_uint<W> code(long long v) { return ap_uint<W>(v); }  // two's-complement wrap
};

template <int W>
struct Unsigned {
  static_assert(W >= 1 && W <= 63, "element widths stay within host integers");
  static constexpr int width = W;
  typedef ap_uint<W> value_type;
  static value_type value(const ap_uint<W>& code) { return code; }
  static bool holds(long long v) { return v >= 0 && v < (1LL << W); }
  static ap_uint<W> code(long long v) { return ap_uint<W>(v); }
};

// A bipolar element of a zero-padded conv window (what bnn::sliding_window emits): bit 0 is the
// bipolar bit, bit 1 is set for a position inside the image. A zero pad is not a bit -- it must
// add nothing to a dot product -- so the matrix-vector unit skips elements whose bit 1 is clear.
struct MaskedBipolar {
  static constexpr int width = 2;
};

// The code of element i of a word of W-bit elements.
template <int W, int N>
ap_uint<W> field(const ap_uint<N>& word, int i) {
#pragma HLS INLINE
  return word.range(i * W + W - 1, i * W);
}

template <int W, int N>
void set_field(ap_uint<N>& word, int i, const ap_uint<W>& code) {
#pragma HLS INLINE
  word.range(i * W + W - 1, i * W) = code;
}

}  // namespace bnn
