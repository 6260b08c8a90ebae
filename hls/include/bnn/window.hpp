// Sliding-window generator: feeds a convolution's matrix-vector unit, one window per output pixel.
//
// In: a C x H x W feature map, pixel by pixel in raster order, one pixel (C elements of ELEM_W
// bits) per beat. Out: for each output pixel in raster order, its window of KH * KW * C elements
// in the order of the conv's weight rows (kernel row, kernel column, channel), E per beat.
//
// Positions outside the image (padding) get the code PAD. When OUT_W = ELEM_W + 1 the extra top
// bit is a valid flag, set on every position inside the image: zero padding of bipolar values,
// which is not a bit and must add nothing (PAD = 0, flag clear; see MaskedBipolar). Otherwise
// PAD is an ordinary code: 0 for integer zero padding, a bit for +-1 padding (Larq).
#pragma once

#include "compat.hpp"
#include "element.hpp"

namespace bnn {

// Geometry of one convolution: pads top/left (bottom/right follow from OH/OW), strides.
template <int C_, int H_, int W_, int KH_, int KW_, int SH_, int SW_, int PT_, int PL_, int OH_, int OW_>
struct WindowShape {
  static constexpr int C = C_, H = H_, W = W_, KH = KH_, KW = KW_, SH = SH_, SW = SW_;
  static constexpr int PT = PT_, PL = PL_, OH = OH_, OW = OW_;
  // The last input row output row oy needs (-1: none yet; oy = OH: the whole image).
  static constexpr int last_row(int oy) {
    return oy < 0 ? -1 : oy >= OH ? H - 1 : (oy * SH - PT + KH - 1 < H - 1 ? oy * SH - PT + KH - 1 : H - 1);
  }
};

// The line buffer holds KH + SH input rows: the KH an output row reads, plus SH more that the
// next output row needs, which are read while this one is emitted -- one pixel in and one beat
// out per clock, overlapped. A beat covers E / C window positions (E a multiple of C) or part of
// one (E divides C); either way each position is one line-buffer read.
template <typename S, int ELEM_W, int OUT_W, int E, unsigned long long PAD>
void sliding_window(hls::stream<ap_uint<S::C * ELEM_W> >& in, hls::stream<ap_uint<E * OUT_W> >& out) {
  constexpr int C = S::C, KW = S::KW, K = S::KH * KW * C, BEATS = K / E;
  constexpr int ROWS = S::KH + S::SH;
  constexpr int PIX = E >= C ? E / C : 1;   // window positions per beat
  constexpr int PART = E >= C ? C : E;      // elements of each position in a beat
  constexpr unsigned long long VALID = OUT_W > ELEM_W ? 1ull << ELEM_W : 0;
  static_assert(E % C == 0 || C % E == 0, "a beat holds whole pixels or part of one");
  static_assert(K % E == 0, "E must divide the window");
  static_assert(OUT_W == ELEM_W || OUT_W == ELEM_W + 1, "the only extra bit is the valid flag");

  // Rows in separate memories, and KW banks of columns: the positions of a beat are in
  // different rows or KW consecutive columns, so each has a port of its own.
  ap_uint<C * ELEM_W> lines[ROWS][S::W];
#pragma HLS ARRAY_PARTITION variable=lines complete dim=1
#pragma HLS ARRAY_PARTITION variable=lines cyclic factor=KW dim=2
  int ry = 0, rx = 0;  // next input pixel

  // oy = -1 only reads (the rows output row 0 needs); the last oy also reads any rows no
  // window uses, so that exactly one frame is consumed.
  for (int oy = -1; oy < S::OH; oy++) {
    const int reads = (S::last_row(oy + 1) - S::last_row(oy)) * S::W;
    const int writes = oy < 0 ? 0 : S::OW * BEATS;
    const int steps = reads > writes ? reads : writes;
    int ox = 0, beat = 0;
    for (int step = 0; step < steps; step++) {
#pragma HLS PIPELINE II=1
// The row being read into is never one this output row's windows read (see above).
#pragma HLS DEPENDENCE variable=lines type=inter dependent=false
#pragma HLS DEPENDENCE variable=lines type=intra dependent=false
      if (step < writes) {
        const int first = beat * E / C, offset = beat * E % C;  // window position, channel
        ap_uint<E * OUT_W> word = 0;
        for (int q = 0; q < PIX; q++) {
#pragma HLS UNROLL
          const int ky = (first + q) / KW, kx = (first + q) % KW;
          const int iy = oy * S::SH - S::PT + ky, ix = ox * S::SW - S::PL + kx;
          const bool inside = iy >= 0 && iy < S::H && ix >= 0 && ix < S::W;
          const ap_uint<C * ELEM_W> pixel = inside ? lines[iy % ROWS][ix] : ap_uint<C * ELEM_W>(0);
          for (int e = 0; e < PART; e++) {
#pragma HLS UNROLL
            const unsigned long long code = static_cast<unsigned long long>(field<ELEM_W>(pixel, offset + e));
            set_field<OUT_W>(word, q * PART + e, ap_uint<OUT_W>(inside ? code | VALID : PAD));
          }
        }
        out.write(word);
        if (beat == BEATS - 1) {
          beat = 0;
          ox++;
        } else {
          beat++;
        }
      }
      if (step < reads) {
        lines[ry % ROWS][rx] = in.read();
        if (rx == S::W - 1) {
          rx = 0;
          ry++;
        } else {
          rx++;
        }
      }
    }
  }
}

}  // namespace bnn
