// Element loops that the compiler vectorises: compiled twice (AVX-512 and baseline x86-64)
// and picked when the library loads, so the binary stays portable.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define THOR_VECTOR_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define THOR_VECTOR_CLONES
#endif

namespace thor::simd {

// 16 floats / int32s as GCC vector types: one AVX-512 register in a THOR_VECTOR_CLONES
// function's avx512f clone, four SSE registers in the baseline one. Reductions keep 16
// partial results and add them at the end; loops over these need no -ffast-math.
constexpr int kLanes = 16;
using f32x16 = float __attribute__((vector_size(64)));
using i32x16 = int32_t __attribute__((vector_size(64)));
using u32x16 = uint32_t __attribute__((vector_size(64)));
using u16x16 = uint16_t __attribute__((vector_size(32)));

#define THOR_SIMD_INLINE static inline __attribute__((always_inline))
// Functions taking or returning these types are always inlined into one clone: no call
// passes them across clones, so the ABI note GCC gives for the baseline clone does not apply
// (silenced for every file that includes this header).
#pragma GCC diagnostic ignored "-Wpsabi"

THOR_SIMD_INLINE f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
THOR_SIMD_INLINE void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }
THOR_SIMD_INLINE f32x16 splat16(float x) { return f32x16{} + x; }
THOR_SIMD_INLINE u32x16 iota16(uint32_t start) {
  return u32x16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} + start;
}
THOR_SIMD_INLINE float hsum16(f32x16 v) {
  float s = 0;
  for (int j = 0; j < kLanes; ++j) s += v[j];
  return s;
}
THOR_SIMD_INLINE float hmax16(f32x16 v) {
  float m = v[0];
  for (int j = 1; j < kLanes; ++j) m = v[j] > m ? v[j] : m;
  return m;
}

// Conversions the one exp below needs, for a vector and for one float.
THOR_SIMD_INLINE i32x16 trunc_to_int(f32x16 x) { return __builtin_convertvector(x, i32x16); }
THOR_SIMD_INLINE int32_t trunc_to_int(float x) { return static_cast<int32_t>(x); }
THOR_SIMD_INLINE f32x16 to_float(i32x16 k) { return __builtin_convertvector(k, f32x16); }
THOR_SIMD_INLINE float to_float(int32_t k) { return static_cast<float>(k); }
THOR_SIMD_INLINE f32x16 bits_to_float(i32x16 k) { return (f32x16)k; }  // a vector cast keeps the bits
THOR_SIMD_INLINE float bits_to_float(int32_t k) {
  float f;
  std::memcpy(&f, &k, sizeof f);
  return f;
}

// e^x for 16 floats or one (loop tails; identical results). Cephes' expf: Cody-Waite range
// reduction, degree-6 polynomial, relative error below 3e-7 for x in [-87, 88]. Clamped to
// that range: tiny inputs give ~1e-38 instead of 0, never a denormal. n = round(x / ln 2) is
// taken as trunc(x / ln 2 + 127.5) - 127, positive before the truncation over the range.
template <class F>
THOR_SIMD_INLINE F vexp(F x) {
  x = x < -87.0f ? F{} - 87.0f : x;
  x = x > 88.0f ? F{} + 88.0f : x;
  const auto k = trunc_to_int(x * 1.44269504088896341f + 127.5f);
  const F n = to_float(k - 127);
  const F r = x - n * 0.693359375f + n * 2.12194440e-4f;
  F p = F{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const F y = p * r * r + r + 1.0f;
  return y * bits_to_float(k << 23);  // * 2^n
}

// A 32-bit counter hash (two rounds of Wellons' lowbias32 under a 64-bit key k0, k1): the
// uniform draws of dropout, element by element, the same in the vector and scalar forms.
template <class U>
THOR_SIMD_INLINE U hash32(U x, uint32_t k0, uint32_t k1) {
  x ^= k0;
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  x += k1;
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// bfloat16 bits of floats, rounded to nearest even as c10::BFloat16 rounds, NaN to the
// quiet NaN 0x7fc0, for 16 floats or one.
THOR_SIMD_INLINE u16x16 bf16_bits(f32x16 x) {
  const u32x16 u = (u32x16)x;
  const u32x16 r = (u + 0x7fffU + ((u >> 16) & 1U)) >> 16;
  return __builtin_convertvector(x != x ? u32x16{} + 0x7fc0U : r, u16x16);
}
THOR_SIMD_INLINE uint16_t bf16_bits(float x) {
  if (x != x) return 0x7fc0;
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return static_cast<uint16_t>((u + 0x7fffU + ((u >> 16) & 1U)) >> 16);
}

}  // namespace thor::simd
