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

// e^x (Cephes' expf: Cody-Waite range reduction, degree-6 polynomial; relative error below
// 2e-7 for x in [-87, 88]). Clamped to that range: tiny inputs give ~1e-38 instead of 0,
// never a denormal. n = round(x / ln 2) is taken as trunc(x / ln 2 + 127.5) - 127, positive
// before the truncation over the clamped range.
THOR_SIMD_INLINE f32x16 vexp(f32x16 x) {
  x = x < -87.0f ? splat16(-87.0f) : x;
  x = x > 88.0f ? splat16(88.0f) : x;
  const i32x16 k = __builtin_convertvector(x * 1.44269504088896341f + 127.5f, i32x16);
  const f32x16 n = __builtin_convertvector(k - 127, f32x16);
  const f32x16 r = x - n * 0.693359375f + n * 2.12194440e-4f;
  f32x16 p = splat16(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const f32x16 y = p * r * r + r + 1.0f;
  return y * (f32x16)(k << 23);  // * 2^n (a vector cast reinterprets the bits)
}

// The same for one float (loop tails), identical results.
inline float vexp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const int32_t k = static_cast<int32_t>(x * 1.44269504088896341f + 127.5f);
  const float n = static_cast<float>(k - 127);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = k << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
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

}  // namespace thor::simd
