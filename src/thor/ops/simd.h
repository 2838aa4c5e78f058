// Element loops that the compiler vectorises: compiled twice (AVX-512 and baseline x86-64)
// and picked when the library loads, so the binary stays portable.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define THOR_VECTOR_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define THOR_VECTOR_CLONES
#endif
