// EVSS_ISA_CLONES: compile a CPU kernel for AVX-512 and AVX2 as well as the baseline ISA; GCC's
// function multi-versioning picks one when the library is loaded.  -ffp-contract=off (setup.py)
// keeps every version's numbers the same.  EVSS_INLINE forces inlining into each version.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define EVSS_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define EVSS_INLINE __attribute__((always_inline)) inline
#else
#define EVSS_ISA_CLONES
#define EVSS_INLINE inline
#endif
