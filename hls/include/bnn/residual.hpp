// A residual layer (Bi-Real Net's block x + BN(conv(sign(x)))): the conv's window carries the
// fixed-point x; residual_split takes the block's sign of every element for the matrix-vector
// unit and, once per window, each channel's shortcut (the sum of x at the tap positions: the
// centre, or an average pool's 2x2); residual_add adds it to the unit's post-op code:
//   out = (code << MAIN_SHIFT) + (shortcut << TAP_SHIFT)   in OUT_W-bit two's complement,
// which lines up the two binary points exactly (the compiler sized OUT_W for the sum).
#pragma once

#include "compat.hpp"
#include "element.hpp"

namespace bnn {

// The block's sign per input channel (level = #{l : x >= thresholds[c][l]}, code codes[c][level])
// and, per window position, the channel whose shortcut it feeds (-1: none).
template <int C_IN, int LEVELS, int K, typename Threshold, int ACT_W>
struct InputSign {
  static constexpr int levels = LEVELS;
  Threshold thresholds[C_IN][LEVELS];
  ap_uint<ACT_W> codes[C_IN][LEVELS + 1];
  int tap_channel[K];
};

template <int K, int SIMD, int C_IN, typename InElem, int ACT_W, int TAP_W, int VECTORS, typename Sign>
void residual_split(hls::stream<ap_uint<SIMD * InElem::width> >& in, hls::stream<ap_uint<SIMD * ACT_W> >& signs,
                    hls::stream<ap_uint<C_IN * TAP_W> >& shortcut, const Sign& sign) {
  static_assert(K % SIMD == 0, "SIMD must divide the window");
  constexpr int SF = K / SIMD;
  for (int v = 0; v < VECTORS; v++) {
    ap_int<TAP_W> sums[C_IN];
#pragma HLS ARRAY_PARTITION variable=sums complete
    for (int c = 0; c < C_IN; c++) {
#pragma HLS UNROLL
      sums[c] = 0;
    }
    for (int sf = 0; sf < SF; sf++) {
#pragma HLS PIPELINE II=1
      const ap_uint<SIMD * InElem::width> beat = in.read();
      ap_uint<SIMD * ACT_W> codes = 0;
      for (int i = 0; i < SIMD; i++) {
#pragma HLS UNROLL
        const int pos = sf * SIMD + i;
        const int c = pos % C_IN;
        const typename InElem::value_type x = InElem::value(field<InElem::width>(beat, i));
        int level = 0;
        for (int l = 0; l < Sign::levels; l++) {
#pragma HLS UNROLL
          level += x >= sign.thresholds[c][l] ? 1 : 0;
        }
        set_field<ACT_W>(codes, i, sign.codes[c][level]);
        const int tap = sign.tap_channel[pos];
        if (tap >= 0) sums[tap] = sums[tap] + x;
      }
      signs.write(codes);
    }
    ap_uint<C_IN * TAP_W> packed = 0;
    for (int c = 0; c < C_IN; c++) {
#pragma HLS UNROLL
      set_field<TAP_W>(packed, c, ap_uint<TAP_W>(sums[c]));
    }
    shortcut.write(packed);
  }
}

template <int C, int PE, int OUT_W, int TAP_W, int MAIN_SHIFT, int TAP_SHIFT, int VECTORS>
void residual_add(hls::stream<ap_uint<PE * OUT_W> >& main, hls::stream<ap_uint<C * TAP_W> >& shortcut,
                  hls::stream<ap_uint<PE * OUT_W> >& out) {
  static_assert(C % PE == 0, "PE must divide the channels");
  constexpr int NF = C / PE;
  for (int v = 0; v < VECTORS; v++) {
    const ap_uint<C * TAP_W> taps = shortcut.read();
    for (int nf = 0; nf < NF; nf++) {
#pragma HLS PIPELINE II=1
      const ap_uint<PE * OUT_W> codes = main.read();
      ap_uint<PE * OUT_W> beat = 0;
      for (int pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
        const ap_int<OUT_W> code = ap_int<OUT_W>(field<OUT_W>(codes, pe));
        const ap_int<TAP_W> tap = ap_int<TAP_W>(field<TAP_W>(taps, nf * PE + pe));
        const ap_int<OUT_W> sum = ap_int<OUT_W>(code << MAIN_SHIFT) + ap_int<OUT_W>(ap_int<OUT_W>(tap) << TAP_SHIFT);
        set_field<OUT_W>(beat, pe, ap_uint<OUT_W>(sum));
      }
      out.write(beat);
    }
  }
}

}  // namespace bnn
