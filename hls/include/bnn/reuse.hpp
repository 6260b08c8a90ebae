// Channel-reuse trees (MST compression) for the matrix-vector unit.
//
// Channel c = nf * PE + pe is computed from scratch (depth 0) or from its parent, a channel of
// the same group nf (the compiler keeps trees inside the channels computed in one clock):
//   y_c = s * y_parent + 2 * sum_{k in D} x_k * w_ck,   s = -1 if negate, else +1,
// where D holds the positions where w_c differs from s * w_parent. The identity holds for every
// input chunk on its own, so the unit applies it chunk by chunk. The tables are constants: when a
// layer is fully unrolled (NF = SF = 1) every index below is a constant after unrolling, and
// synthesis keeps only the |D| XNORs of each child.
#pragma once

#include "compat.hpp"

namespace bnn {

// PE x NF channels, SIMD-wide chunks (SF per vector), LEVELS = the deepest chain + 1.
template <int PE, int NF, int SF, int SIMD, int LEVELS>
struct ReuseTree {
  static constexpr int levels = LEVELS;
  int depths[PE][NF];                   // 0: computed from scratch
  int parents[PE][NF];                  // the parent's pe (same nf); unused at depth 0
  bool negates[PE][NF];                 // s = -1
  ap_uint<SIMD> differs[PE][NF * SF];   // bit i of [pe][nf * SF + sf]: input sf * SIMD + i is in D

  int depth(int pe, int nf) const {
#pragma HLS INLINE
    return depths[pe][nf];
  }
  int parent(int pe, int nf) const {
#pragma HLS INLINE
    return parents[pe][nf];
  }
  bool negate(int pe, int nf) const {
#pragma HLS INLINE
    return negates[pe][nf];
  }
  ap_uint<SIMD> differ(int pe, int chunk) const {
#pragma HLS INLINE
    return differs[pe][chunk];
  }
};

// Every channel from scratch: the unit reduces to one Dot per channel.
struct NoReuse {
  static constexpr int levels = 1;
  int depth(int, int) const { return 0; }
  int parent(int, int) const { return 0; }
  bool negate(int, int) const { return false; }
  ap_uint<1> differ(int, int) const { return 0; }
};

}  // namespace bnn
