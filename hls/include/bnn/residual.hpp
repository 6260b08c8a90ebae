// A residual layer (Bi-Real Net's block x + BN(conv(sign(x)))): the conv's window carries the
// fixed-point x; residual_split takes the block's sign of every element for the matrix-vector
// unit and, once per window, each channel's shortcut (the sum of x at the tap positions: the
// centre, or an average pool's 2x2); residual_add adds it to the unit's post-op code:
//   sum = (code << MAIN_SHIFT) + (shortcut << TAP_SHIFT)   in SUM_W-bit two's complement,
// which lines up the two binary points exactly (the compiler sized SUM_W for the sum), then any
// fixed-point affines after the add (AffineStage).
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

// A window element is a CODE_W-bit two's-complement code, with an in-map bit above it when MASKED
// (padding then signs to code 0: it adds nothing, whatever the sign of 0 is).
template <int K, int SIMD, int C_IN, int CODE_W, bool MASKED, int ACT_W, int TAP_W, int VECTORS, typename Sign>
void residual_split(hls::stream<ap_uint<SIMD * (CODE_W + MASKED)> >& in, hls::stream<ap_uint<SIMD * ACT_W> >& signs,
                    hls::stream<ap_uint<C_IN * TAP_W> >& shortcut, const Sign& sign) {
  constexpr int PORT_W = CODE_W + MASKED;
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
      const ap_uint<SIMD * PORT_W> beat = in.read();
      ap_uint<SIMD * ACT_W> codes = 0;
      for (int i = 0; i < SIMD; i++) {
#pragma HLS UNROLL
        const int pos = sf * SIMD + i;
        const int c = pos % C_IN;
        const ap_uint<PORT_W> element = field<PORT_W>(beat, i);
        const ap_int<CODE_W> x = ap_int<CODE_W>(field<CODE_W>(element, 0));
        const bool in_map = !MASKED || element[PORT_W - 1];
        int level = 0;
        for (int l = 0; l < Sign::levels; l++) {
#pragma HLS UNROLL
          level += x >= sign.thresholds[c][l] ? 1 : 0;
        }
        set_field<ACT_W>(codes, i, in_map ? sign.codes[c][level] : ap_uint<ACT_W>(0));
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

// One fixed-point affine after the add (ReActNet's RPReLU is three): on channel [pe][nf],
// y = floor((x * m + bias) / 2^SHIFT) in OUT_W-bit two's complement, m = neg where x < 0 when
// PRELU, else mult. Exact modulo 2^(OUT_W + SHIFT), all the shift and the narrowing read.
template <int PE, int NF, int IN_W, int OUT_W, int SHIFT, bool PRELU, typename Mult, typename Bias>
struct AffineStage {
  static constexpr int out_width = OUT_W;
  Mult mult[PE][NF];
  Mult neg[PE][NF];
  Bias bias[PE][NF];

  ap_int<OUT_W> apply(int pe, int nf, const ap_int<IN_W>& x) const {
#pragma HLS INLINE
    const Mult m = (PRELU && x < 0) ? neg[pe][nf] : mult[pe][nf];
    const ap_int<OUT_W + SHIFT> y = x * m + bias[pe][nf];
    return ap_int<OUT_W>(y >> SHIFT);
  }
};

// The stages in order: First, then Rest (another Then, or the last AffineStage).
template <typename First, typename Rest>
struct Then {
  static constexpr int out_width = Rest::out_width;
  First first;
  Rest rest;

  template <int W>
  ap_int<out_width> apply(int pe, int nf, const ap_int<W>& x) const {
#pragma HLS INLINE
    return rest.apply(pe, nf, first.apply(pe, nf, x));
  }
};

// No stage: the sum is the output.
template <int W>
struct NoStage {
  static constexpr int out_width = W;

  ap_int<W> apply(int, int, const ap_int<W>& x) const { return x; }
};

template <int C, int PE, int SUM_W, int TAP_W, int MAIN_SHIFT, int TAP_SHIFT, int VECTORS, typename Post>
void residual_add(hls::stream<ap_uint<PE * SUM_W> >& main, hls::stream<ap_uint<C * TAP_W> >& shortcut,
                  hls::stream<ap_uint<PE * Post::out_width> >& out, const Post& post) {
  constexpr int OUT_W = Post::out_width;
  static_assert(C % PE == 0, "PE must divide the channels");
  constexpr int NF = C / PE;
  for (int v = 0; v < VECTORS; v++) {
    const ap_uint<C * TAP_W> taps = shortcut.read();
    for (int nf = 0; nf < NF; nf++) {
#pragma HLS PIPELINE II=1
      const ap_uint<PE * SUM_W> codes = main.read();
      ap_uint<PE * OUT_W> beat = 0;
      for (int pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
        const ap_int<SUM_W> code = ap_int<SUM_W>(field<SUM_W>(codes, pe));
        const ap_int<TAP_W> tap = ap_int<TAP_W>(field<TAP_W>(taps, nf * PE + pe));
        const ap_int<SUM_W> sum = ap_int<SUM_W>(code << MAIN_SHIFT) + ap_int<SUM_W>(ap_int<SUM_W>(tap) << TAP_SHIFT);
        set_field<OUT_W>(beat, pe, ap_uint<OUT_W>(post.apply(pe, nf, sum)));
      }
      out.write(beat);
    }
  }
}

}  // namespace bnn
