// Re-beat a stream of W-bit elements: a producer writes IN elements per beat, its consumer
// reads OUT per beat (e.g. one layer's PE outputs feeding the next layer's SIMD inputs).
// A frame has COUNT elements. When neither width divides the other, the compiler chains
// split_beats to their greatest common divisor and gather_beats from it.
#pragma once

#include "compat.hpp"

namespace bnn {

// OUT divides IN: each input beat leaves as IN/OUT beats, lowest elements first.
template <int W, int IN, int OUT, int COUNT>
void split_beats(hls::stream<ap_uint<IN * W> >& in, hls::stream<ap_uint<OUT * W> >& out) {
  static_assert(IN % OUT == 0 && COUNT % IN == 0, "OUT must divide IN, and IN the frame");
  ap_uint<IN * W> buffer = 0;
  int part = 0;
  for (int i = 0; i < COUNT / OUT; i++) {
#pragma HLS PIPELINE II=1
    if (part == 0) buffer = in.read();
    out.write(ap_uint<OUT * W>(buffer));  // the lowest OUT elements
    buffer >>= OUT * W;
    part = part == IN / OUT - 1 ? 0 : part + 1;
  }
}

// IN divides OUT: OUT/IN input beats are shifted in from the top, so the first lands lowest.
template <int W, int IN, int OUT, int COUNT>
void gather_beats(hls::stream<ap_uint<IN * W> >& in, hls::stream<ap_uint<OUT * W> >& out) {
  static_assert(OUT % IN == 0 && COUNT % OUT == 0, "IN must divide OUT, and OUT the frame");
  ap_uint<OUT * W> buffer = 0;
  int part = 0;
  for (int i = 0; i < COUNT / IN; i++) {
#pragma HLS PIPELINE II=1
    ap_uint<OUT * W> piece = in.read();
    piece <<= (OUT - IN) * W;
    buffer >>= IN * W;
    buffer |= piece;
    if (part == OUT / IN - 1) {
      out.write(buffer);
      part = 0;
    } else {
      part++;
    }
  }
}

}  // namespace bnn
