// Arbitrary-precision integers and streams for the bnn kernels.
//
// With Vitis HLS (or Xilinx's open-source ap_types) on the include path, the vendor headers are
// used. Without them, this file defines a small stand-in so that C simulation builds with plain
// g++. The stand-in covers exactly what the kernels use, and nothing else:
//   ap_int<W>/ap_uint<W>: construction from integers, other widths (sign- or zero-extending,
//     truncating), bit ranges of at most 64 bits and hex strings; bit reads x[i]; range(hi, lo)
//     reads and writes; >>=, <<=, |= on any width; +=, -= and implicit conversion to a 64-bit
//     integer (so ordinary C++ arithmetic and comparisons) for W <= 64.
//   hls::stream<T>: write(), read(), empty(), size().
// Where the vendor headers widen intermediate results automatically, the kernels keep every
// intermediate value within 64 bits, so the stand-in computes the same numbers.
#pragma once

#if __has_include(<ap_int.h>) && !defined(BNN_USE_COMPAT)
#include <ap_int.h>
#else
#define BNN_COMPAT_AP_INT 1
#include <cassert>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

namespace bnn_compat {

template <int W, bool S>
class ap_int_base;

// A view of bits [hi:lo] (at most 64 of them) of an ap_int_base, as the vendor's ap_range_ref.
template <int W, bool S>
class range_ref {
 public:
  range_ref(ap_int_base<W, S>* owner, int hi, int lo) : owner_(owner), hi_(hi), lo_(lo) {
    assert(0 <= lo && lo <= hi && hi < W && hi - lo < 64);
  }
  range_ref(const range_ref&) = default;
  range_ref& operator=(const range_ref&) = delete;  // would copy the view, not the bits

  int length() const { return hi_ - lo_ + 1; }
  operator unsigned long long() const { return owner_->get_bits(lo_, length()); }
  range_ref& operator=(unsigned long long value) {
    owner_->set_bits(lo_, length(), value);
    return *this;
  }
  template <int W2, bool S2>
  range_ref& operator=(const ap_int_base<W2, S2>& value) {
    return *this = ap_int_base<64, S2>(value).low_word();  // extended by its own signedness
  }

 private:
  ap_int_base<W, S>* owner_;
  int hi_, lo_;
};

// W bits in little-endian 64-bit words; bits above W are always zero; signed types are read
// as two's complement.
template <int W, bool S>
class ap_int_base {
  static_assert(W >= 1, "ap_int width must be positive");

 public:
  static constexpr int kWords = (W + 63) / 64;
  // The C++ integer a value converts to: exact for every W <= 64.
  typedef typename std::conditional<(S || W < 64), long long, unsigned long long>::type native;

  // constexpr, so that the big constant weight arrays are initialised at compile time.
  constexpr ap_int_base() : words_{} {}

  template <typename I, typename = typename std::enable_if<std::is_integral<I>::value>::type>
  constexpr ap_int_base(I value) : words_{} {
    const bool negative = std::is_signed<I>::value && value < 0;
    fill(static_cast<unsigned long long>(value), negative);
  }

  template <int W2, bool S2>
  constexpr ap_int_base(const ap_int_base<W2, S2>& other) : words_{} {
    const bool negative = S2 && other.bit(W2 - 1);
    for (int i = 0; i < kWords; i++) {
      words_[i] = i < other.kWords ? other.word(i) : (negative ? ~0ull : 0ull);
    }
    if (negative && W2 % 64 != 0 && (W2 - 1) / 64 < kWords) {
      words_[(W2 - 1) / 64] |= ~0ull << (W2 % 64);  // sign-extend the top partial word
    }
    clear_unused();
  }

  template <int W2, bool S2>
  ap_int_base(const range_ref<W2, S2>& range) {
    fill(static_cast<unsigned long long>(range), false);
  }

  // Hex digits ("0x" prefix optional); the only radix the generated code uses.
  constexpr ap_int_base(const char* text, signed char radix) : words_{} {
    if (radix != 16) {
      std::fprintf(stderr, "bnn compat: only radix 16 strings are supported\n");
      std::abort();
    }
    if (text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) text += 2;
    for (; *text; text++) {
      const char c = *text;
      const int digit = c >= '0' && c <= '9' ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (digit < 0) {
        std::fprintf(stderr, "bnn compat: bad hex digit '%c'\n", c);
        std::abort();
      }
      *this <<= 4;
      words_[0] |= static_cast<unsigned long long>(digit);
    }
  }

  operator native() const {
    static_assert(W <= 64, "only ap_int values of at most 64 bits convert to C++ integers");
    unsigned long long bits = words_[0];
    if (S && W < 64 && bit(W - 1)) bits |= ~0ull << W;
    return static_cast<native>(bits);
  }

  bool operator[](int index) const {
    assert(0 <= index && index < W);
    return bit(index);
  }

  range_ref<W, S> range(int hi, int lo) const {
    return range_ref<W, S>(const_cast<ap_int_base*>(this), hi, lo);
  }

  ap_int_base& operator+=(long long value) { return *this = static_cast<long long>(*this) + value; }
  ap_int_base& operator-=(long long value) { return *this = static_cast<long long>(*this) - value; }

  ap_int_base& operator>>=(int shift) {  // logical, as on the unsigned words the kernels shift
    const int whole = shift / 64, part = shift % 64;
    for (int i = 0; i < kWords; i++) {
      const unsigned long long lo = i + whole < kWords ? words_[i + whole] : 0;
      const unsigned long long hi = i + whole + 1 < kWords ? words_[i + whole + 1] : 0;
      words_[i] = part ? (lo >> part) | (hi << (64 - part)) : lo;
    }
    return *this;
  }

  constexpr ap_int_base& operator<<=(int shift) {
    const int whole = shift / 64, part = shift % 64;
    for (int i = kWords - 1; i >= 0; i--) {
      const unsigned long long hi = i - whole >= 0 ? words_[i - whole] : 0;
      const unsigned long long lo = i - whole - 1 >= 0 ? words_[i - whole - 1] : 0;
      words_[i] = part ? (hi << part) | (lo >> (64 - part)) : hi;
    }
    clear_unused();
    return *this;
  }

  ap_int_base& operator|=(const ap_int_base& other) {
    for (int i = 0; i < kWords; i++) words_[i] |= other.words_[i];
    return *this;
  }

  // Helpers for the stand-in itself.
  constexpr unsigned long long word(int i) const { return words_[i]; }
  unsigned long long low_word() const { return words_[0]; }
  constexpr bool bit(int index) const { return (words_[index / 64] >> (index % 64)) & 1; }

  unsigned long long get_bits(int lo, int length) const {
    const int w = lo / 64, shift = lo % 64;
    unsigned long long bits = words_[w] >> shift;
    if (shift && w + 1 < kWords) bits |= words_[w + 1] << (64 - shift);
    return length == 64 ? bits : bits & ((1ull << length) - 1);
  }

  void set_bits(int lo, int length, unsigned long long value) {
    const unsigned long long mask = length == 64 ? ~0ull : (1ull << length) - 1;
    value &= mask;
    const int w = lo / 64, shift = lo % 64;
    words_[w] = (words_[w] & ~(mask << shift)) | (value << shift);
    if (shift + length > 64 && w + 1 < kWords) {  // straddles two words
      words_[w + 1] = (words_[w + 1] & ~(mask >> (64 - shift))) | (value >> (64 - shift));
    }
  }

 private:
  constexpr void fill(unsigned long long low, bool negative) {
    words_[0] = low;
    for (int i = 1; i < kWords; i++) words_[i] = negative ? ~0ull : 0ull;
    clear_unused();
  }

  constexpr void clear_unused() {
    if (W % 64 != 0) words_[kWords - 1] &= (1ull << (W % 64)) - 1;
  }

  unsigned long long words_[kWords];
};

}  // namespace bnn_compat

template <int W>
using ap_int = bnn_compat::ap_int_base<W, true>;
template <int W>
using ap_uint = bnn_compat::ap_int_base<W, false>;
#endif  // ap_int

#if __has_include(<hls_stream.h>) && !defined(BNN_USE_COMPAT)
#include <hls_stream.h>
#else
#define BNN_COMPAT_HLS_STREAM 1
#include <cstdio>
#include <cstdlib>
#include <deque>

namespace hls {

// An unbounded FIFO: C simulation runs the dataflow processes one after another, so every
// stream must hold a whole frame; reading an empty stream is a bug in the design.
template <typename T>
class stream {
 public:
  stream() : name_("stream") {}
  explicit stream(const char* name) : name_(name) {}
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  void write(const T& value) { fifo_.push_back(value); }

  T read() {
    if (fifo_.empty()) {
      std::fprintf(stderr, "hls::stream '%s': read while empty\n", name_);
      std::abort();
    }
    T value = fifo_.front();
    fifo_.pop_front();
    return value;
  }

  bool empty() const { return fifo_.empty(); }
  std::size_t size() const { return fifo_.size(); }

 private:
  const char* name_;  // a string literal
  std::deque<T> fifo_;
};

}  // namespace hls
#endif  // hls_stream
