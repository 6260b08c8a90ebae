// The bnn kernel library: header-only HLS C++ kernels for binarized networks.
//   compat.hpp         ap_int/ap_uint/hls::stream (vendor headers, or a stand-in for g++)
//   element.hpp        element encodings and packed-word fields
//   matrix_vector.hpp  XNOR-popcount / integer x +-1 matrix-vector unit with PE/SIMD folding
//   reuse.hpp          channel-reuse trees the matrix-vector unit can compute children from
//   window.hpp         sliding-window generator (line buffers, padding) feeding a conv's unit
//   pool.hpp           streaming per-channel max/min pool
//   activation.hpp     multi-threshold, fixed-point affine and pass-through activations
//   stream_width.hpp   beat-width conversion between folded layers
//   argmax.hpp         index of the largest output
//   residual.hpp       a residual layer's input sign and shortcut add (Bi-Real blocks)
#pragma once

#include "compat.hpp"
#include "element.hpp"
#include "activation.hpp"
#include "reuse.hpp"
#include "matrix_vector.hpp"
#include "window.hpp"
#include "pool.hpp"
#include "stream_width.hpp"
#include "argmax.hpp"
#include "residual.hpp"
