// Index of the largest element of a vector (the first one on ties, as ONNX ArgMax with
// select_last_index = 0), for a vector of N elements arriving PE per beat.
#pragma once

#include "compat.hpp"
#include "element.hpp"

namespace bnn {

template <int N, int PE, typename Elem, int OUT_W>
void argmax(hls::stream<ap_uint<PE * Elem::width> >& in, hls::stream<ap_uint<OUT_W> >& out) {
  static_assert(N % PE == 0, "PE must divide the vector length");
  typename Elem::value_type best = 0;
  ap_uint<OUT_W> best_index = 0;
  for (int nf = 0; nf < N / PE; nf++) {
#pragma HLS PIPELINE II=1
    const ap_uint<PE * Elem::width> beat = in.read();
    for (int pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
      const typename Elem::value_type v = Elem::value(field<Elem::width>(beat, pe));
      if ((nf == 0 && pe == 0) || v > best) {  // strictly greater keeps the first maximum
        best = v;
        best_index = nf * PE + pe;
      }
    }
  }
  out.write(best_index);
}

}  // namespace bnn
