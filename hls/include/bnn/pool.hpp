// Streaming max/min pool, per channel, without padding.
//
// In: a C x H x W map pixel by pixel in raster order, one pixel (C elements) per beat. Out: the
// OH x OW pooled map the same way. Channel c takes the maximum where bit c of max_channels is
// set, else the minimum (a max pool that a negative scale was moved across). On bipolar
// elements that is an OR or an AND of the bits.
#pragma once

#include "compat.hpp"
#include "element.hpp"

namespace bnn {

// Each input pixel updates the running result of every window containing it, and completes at
// most one window -- whose result then leaves, in raster order. R output rows (and Q windows
// of a row) are in flight at once: R = ceil(KH / SH), Q = ceil(KW / SW), both 1 when windows
// do not overlap. One input pixel per clock.
template <int C, int H, int W, int KH, int KW, int SH, int SW, typename Elem>
void pool(hls::stream<ap_uint<C * Elem::width> >& in, hls::stream<ap_uint<C * Elem::width> >& out,
          const ap_uint<C>& max_channels) {
  constexpr int EW = Elem::width;
  constexpr int OH = (H - KH) / SH + 1, OW = (W - KW) / SW + 1;
  constexpr int R = (KH + SH - 1) / SH, Q = (KW + SW - 1) / SW;
  static_assert(OH >= 1 && OW >= 1, "the window fits the map");

  // Output row oy lives in running[oy % R]. Registers, not memory: consecutive pixels update
  // the same window, a read-modify-write that must take one clock.
  ap_uint<C * EW> running[R][OW];
#pragma HLS ARRAY_PARTITION variable=running complete dim=0
  int y = 0, x = 0;
  for (int i = 0; i < H * W; i++) {
#pragma HLS PIPELINE II=1
    const ap_uint<C * EW> pixel = in.read();
    for (int r = 0; r < R; r++) {
#pragma HLS UNROLL
      for (int q = 0; q < Q; q++) {
#pragma HLS UNROLL
        const int oy = y / SH - r, ox = x / SW - q;
        if (oy < 0 || oy >= OH || y >= oy * SH + KH || ox < 0 || ox >= OW || x >= ox * SW + KW) continue;
        const bool first = y == oy * SH && x == ox * SW;
        const ap_uint<C * EW> previous = running[oy % R][ox];
        ap_uint<C * EW> result = 0;
        for (int c = 0; c < C; c++) {
#pragma HLS UNROLL
          const ap_uint<EW> a = field<EW>(previous, c), b = field<EW>(pixel, c);
          const bool take_b = first || (max_channels[c] ? Elem::value(b) > Elem::value(a)
                                                        : Elem::value(b) < Elem::value(a));
          set_field<EW>(result, c, take_b ? b : a);
        }
        if (y == oy * SH + KH - 1 && x == ox * SW + KW - 1) {
          out.write(result);
        } else {
          running[oy % R][ox] = result;
        }
      }
    }
    if (x == W - 1) {
      x = 0;
      y++;
    } else {
      x++;
    }
  }
}

}  // namespace bnn
