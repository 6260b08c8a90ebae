// Matrix-vector unit with PE/SIMD folding, for binary (XNOR) or multi-bit weights.
//
// y[c] = activation_c(sum_k x[k] * w[c][k]) with w in {-1, +1} or WB-bit integers, for C outputs
// and K inputs.
// Each clock, PE output channels consume SIMD inputs each: a frame takes (C/PE) * (K/SIMD) clocks.
// Channel c = nf * PE + pe is computed by processing element pe in channel group nf.
//
// weights[pe][nf * SF + sf] holds the SIMD weight bits of channel nf * PE + pe for inputs
// sf * SIMD .. sf * SIMD + SIMD - 1 (bit i set means +1). Partition dimension 1 of the weight
// array (and of the activation's and reuse tree's arrays) completely so that all PEs read in
// the same clock.
#pragma once

#include "compat.hpp"
#include "element.hpp"
#include "reuse.hpp"

namespace bnn {

// sum_i x[i] * w[i] over the SIMD lanes i with m[i] set, for integer elements: a signed add
// (or subtract) per lane. With a constant mask, synthesis drops the lanes it clears.
template <typename Elem, int SIMD, int ACC_W>
struct Dot {
  static ap_int<ACC_W> of(const ap_uint<SIMD * Elem::width>& x, const ap_uint<SIMD>& w,
                          const ap_uint<SIMD>& m) {
#pragma HLS INLINE
    ap_int<ACC_W> sum = 0;
    for (int i = 0; i < SIMD; i++) {
#pragma HLS UNROLL
      const ap_int<ACC_W> v = Elem::value(field<Elem::width>(x, i));
      if (!m[i]) continue;
      if (w[i]) {
        sum += v;
      } else {
        sum -= v;
      }
    }
    return sum;
  }
};

// Bipolar inputs: dot = 2 * popcount(xnor(x, w) & m) - popcount(m), one XNOR and a counter bit
// per lane.
template <int SIMD, int ACC_W>
struct Dot<Bipolar, SIMD, ACC_W> {
  static ap_int<ACC_W> of(const ap_uint<SIMD>& x, const ap_uint<SIMD>& w, const ap_uint<SIMD>& m) {
#pragma HLS INLINE
    ap_int<ACC_W> agree = 0, lanes = 0;
    for (int i = 0; i < SIMD; i++) {
#pragma HLS UNROLL
      agree += (m[i] && x[i] == w[i]) ? 1 : 0;
      lanes += m[i] ? 1 : 0;
    }
    return agree * 2 - lanes;
  }
};

// Bipolar window elements with a valid flag (zero padding): padded lanes count like masked ones.
template <int SIMD, int ACC_W>
struct Dot<MaskedBipolar, SIMD, ACC_W> {
  static ap_int<ACC_W> of(const ap_uint<2 * SIMD>& x, const ap_uint<SIMD>& w, const ap_uint<SIMD>& m) {
#pragma HLS INLINE
    ap_int<ACC_W> agree = 0, lanes = 0;
    for (int i = 0; i < SIMD; i++) {
#pragma HLS UNROLL
      const bool counts = m[i] && x[2 * i + 1];
      agree += (counts && x[2 * i] == w[i]) ? 1 : 0;
      lanes += counts ? 1 : 0;
    }
    return agree * 2 - lanes;
  }
};

// Multi-bit (and ternary) weights: lane i's weight is a WB-bit two's-complement integer at bits
// [i*WB +: WB]; the term is value(x_i) * w_i, a small multiplier (LUTs at these widths). Bipolar
// inputs give +-w_i.
template <typename Elem, int SIMD, int WB, int ACC_W>
struct WeightedDot {
  static ap_int<ACC_W> of(const ap_uint<SIMD * Elem::width>& x, const ap_uint<SIMD * WB>& w) {
#pragma HLS INLINE
    ap_int<ACC_W> sum = 0;
    for (int i = 0; i < SIMD; i++) {
#pragma HLS UNROLL
      const ap_int<WB> weight = ap_int<WB>(field<WB>(w, i));
      sum += ap_int<ACC_W>(Elem::value(field<Elem::width>(x, i))) * weight;
    }
    return sum;
  }
};

// Zero-padded bipolar window elements: a padded lane adds nothing.
template <int SIMD, int WB, int ACC_W>
struct WeightedDot<MaskedBipolar, SIMD, WB, ACC_W> {
  static ap_int<ACC_W> of(const ap_uint<2 * SIMD>& x, const ap_uint<SIMD * WB>& w) {
#pragma HLS INLINE
    ap_int<ACC_W> sum = 0;
    for (int i = 0; i < SIMD; i++) {
#pragma HLS UNROLL
      const ap_int<ACC_W> weight = ap_int<WB>(field<WB>(w, i));
      if (x[2 * i + 1]) sum += x[2 * i] ? weight : ap_int<ACC_W>(-weight);
    }
    return sum;
  }
};

// The dot products of one input chunk (SIMD inputs) for the PE channels of group nf. Without a
// reuse tree every channel is a full Dot. With one, channels go level by level (parents first):
// a child is s * (its parent's chunk sum) + 2 * (its own sum over the positions D where it
// differs from s * parent) -- exact per chunk, since the other positions contribute the same.
// PW is wider than the accumulator by two bits: 2 * (sum over D) and -(most negative sum) fit.
template <typename InElem, int SIMD, int PE, int PW, typename Reuse>
void chunk_dots(const ap_uint<SIMD * InElem::width>& x, const ap_uint<SIMD> w[PE], const Reuse& reuse, int nf,
                int chunk, ap_int<PW> partial[PE]) {
#pragma HLS INLINE
  const ap_uint<SIMD> all = ap_uint<SIMD>(-1);
  for (int level = 0; level < Reuse::levels; level++) {
#pragma HLS UNROLL
    for (int pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
      if (reuse.depth(pe, nf) != level) continue;
      if (level == 0) {
        partial[pe] = Dot<InElem, SIMD, PW>::of(x, w[pe], all);
      } else {
        const ap_int<PW> base = partial[reuse.parent(pe, nf)];
        const ap_int<PW> own = Dot<InElem, SIMD, PW>::of(x, w[pe], reuse.differ(pe, chunk));
        partial[pe] = (reuse.negate(pe, nf) ? ap_int<PW>(-base) : base) + own * 2;
      }
    }
  }
}

// The chunk's dot products for WB-bit weight words: +-1 weights (WB = 1) go through the XNOR
// path and its reuse tree, wider ones through WeightedDot, every channel from scratch (a reuse
// tree is built for +-1 weights only).
template <typename InElem, int SIMD, int PE, int PW, int WB>
struct ChunkDots {
  template <typename Reuse>
  static void run(const ap_uint<SIMD * InElem::width>& x, const ap_uint<SIMD * WB> w[PE], const Reuse&, int, int,
                  ap_int<PW> partial[PE]) {
#pragma HLS INLINE
    static_assert(Reuse::levels == 1, "channel reuse needs +-1 weights");
    for (int pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
      partial[pe] = WeightedDot<InElem, SIMD, WB, PW>::of(x, w[pe]);
    }
  }
};

template <typename InElem, int SIMD, int PE, int PW>
struct ChunkDots<InElem, SIMD, PE, PW, 1> {
  template <typename Reuse>
  static void run(const ap_uint<SIMD * InElem::width>& x, const ap_uint<SIMD> w[PE], const Reuse& reuse, int nf,
                  int chunk, ap_int<PW> partial[PE]) {
#pragma HLS INLINE
    chunk_dots<InElem, SIMD, PE>(x, w, reuse, nf, chunk, partial);
  }
};

// One frame of VECTORS input vectors (1 for a dense layer; the output pixels of a convolution
// fed by a sliding-window kernel): per vector, reads K/SIMD input beats of SIMD elements and
// writes C/PE output beats of PE codes. ACC_W holds any dot product (the IR's accumulator
// type); the Activation turns the finished dot product of channel (pe, nf) into an output code
// of Activation::out_width bits. Reuse is a bnn::ReuseTree, or NoReuse.
// Weight words are WW = SIMD * WB bits: WB = 1 for +-1 weights (bit set: +1), else WB-bit
// two's-complement integers (see WeightedDot).
template <int K, int C, int SIMD, int PE, typename InElem, int ACC_W, int VECTORS = 1,
          typename Activation, typename Reuse = NoReuse, int WW>
void matrix_vector(hls::stream<ap_uint<SIMD * InElem::width> >& in,
                   hls::stream<ap_uint<PE * Activation::out_width> >& out,
                   const ap_uint<WW> weights[PE][(C / PE) * (K / SIMD)],
                   const Activation& activation, const Reuse& reuse = Reuse()) {
  static_assert(K % SIMD == 0, "SIMD must divide the input count");
  static_assert(C % PE == 0, "PE must divide the output count");
  static_assert(WW % SIMD == 0, "a weight word holds SIMD weights");
  constexpr int WB = WW / SIMD;
  constexpr int SF = K / SIMD;  // input beats per vector
  constexpr int NF = C / PE;    // channel groups, each needing the whole input vector
  constexpr int OUT_W = Activation::out_width;

  // The input vector arrives once and is replayed from here for channel groups 1 .. NF-1.
  ap_uint<SIMD * InElem::width> input_buffer[SF];
  ap_int<ACC_W> acc[PE];
#pragma HLS ARRAY_PARTITION variable=acc complete

  int sf = 0, nf = 0;
  for (int step = 0; step < VECTORS * NF * SF; step++) {
#pragma HLS PIPELINE II=1
    ap_uint<SIMD * InElem::width> x;
    if (nf == 0) {
      x = in.read();
      if (NF > 1) input_buffer[sf] = x;
    } else {
      x = input_buffer[sf];
    }
    ap_uint<WW> w[PE];
    ap_int<ACC_W + 2> partial[PE];
#pragma HLS ARRAY_PARTITION variable=w complete
#pragma HLS ARRAY_PARTITION variable=partial complete
    for (int pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
      w[pe] = weights[pe][nf * SF + sf];
    }
    ChunkDots<InElem, SIMD, PE, ACC_W + 2, WB>::run(x, w, reuse, nf, nf * SF + sf, partial);
    for (int pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
      if (sf == 0) acc[pe] = 0;
      acc[pe] += partial[pe];  // exact: the finished sum fits ACC_W
    }
    if (sf == SF - 1) {
      ap_uint<PE * OUT_W> beat = 0;
      for (int pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
        set_field<OUT_W>(beat, pe, activation.activate(pe, nf, acc[pe]));
      }
      out.write(beat);
      sf = 0;
      nf = nf == NF - 1 ? 0 : nf + 1;  // the next vector starts with a read
    } else {
      sf++;
    }
  }
}

}  // namespace bnn
