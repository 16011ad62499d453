#ifndef CONTEXTSTORE_CKERNELS_H
#define CONTEXTSTORE_CKERNELS_H

/// Distance kernels for one pair of float32 vectors, in C so that each can be compiled for the
/// instruction set it needs (AVX2 + FMA, or the baseline) and picked once at run time from what
/// the processor supports.
typedef float (*ck_pair_kernel)(const float *a, const float *b, long n);

/// The fastest inner-product kernel this processor runs.
ck_pair_kernel ck_select_dot(void);

/// The fastest squared-Euclidean-distance kernel this processor runs.
ck_pair_kernel ck_select_squared_l2(void);

/// The name of the instruction set the selected kernels use ("avx2+fma" or "baseline").
const char *ck_kernel_isa(void);

/// y[t * ldy + o] = bias[o] + dot(x[t * k ...], w[o * k ...]) for t < m, o < n: a matrix product
/// for few rows (m), which streams each weight row once instead of packing the weights as a
/// general GEMM does. For a single short text the weights dominate the traffic, so this is the
/// fast path.
void ck_small_gemm(const float *x, long m, long k, const float *w, long n, const float *bias, float *y, long ldy);

/// Asks the processor to start loading the cache line at `address` (a vector about to be scored).
static inline void ck_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif
