// Matrix products for a few rows (one short text) against weights packed as float16 in blocks
// of 16 outputs: half the bytes of float32 to stream, read in the order the kernel uses them.
#include "ckernels.h"
#include "half.h"

#include <string.h>

long ck_packed_f16_count(long n, long k) { return ((n + 15) / 16) * 16 * k; }

void ck_pack_f16(const float *w, long n, long k, unsigned short *packed) {
    long blocks = (n + 15) / 16;
    for (long b = 0; b < blocks; b++)
        for (long j = 0; j < k; j++)
            for (long i = 0; i < 16; i++) {
                long o = b * 16 + i;
                packed[(b * k + j) * 16 + i] = o < n ? float_to_half(w[o * k + j]) : 0;
            }
}

#if defined(__x86_64__)
#include <immintrin.h>

#define CK_AVX512 __attribute__((target("avx512f")))

// `rows` rows of x (at most 12) against two blocks of 16 outputs: 24 accumulators and two weight
// registers; each weight load feeds 2 x rows FMAs. Inlined with a constant `rows`, so the
// accumulators stay in registers.
static inline __attribute__((always_inline)) CK_AVX512 void tile_2x16(
    int rows, const float *x, long k, const unsigned short *block0, const unsigned short *block1, const float *bias,
    float *y, long ldy) {
    __m512 a0[12], a1[12];
    __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
#pragma clang loop unroll(full)
    for (int t = 0; t < rows; t++) {
        a0[t] = b0;
        a1[t] = b1;
    }
    for (long j = 0; j < k; j++) {
        __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(block0 + j * 16)));
        __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(block1 + j * 16)));
#pragma clang loop unroll(full)
        for (int t = 0; t < rows; t++) {
            __m512 xv = _mm512_set1_ps(x[t * k + j]);
            a0[t] = _mm512_fmadd_ps(w0, xv, a0[t]);
            a1[t] = _mm512_fmadd_ps(w1, xv, a1[t]);
        }
    }
#pragma clang loop unroll(full)
    for (int t = 0; t < rows; t++) {
        _mm512_storeu_ps(y + t * ldy, a0[t]);
        _mm512_storeu_ps(y + t * ldy + 16, a1[t]);
    }
}

static CK_AVX512 void tile_rows(
    int rows, const float *x, long k, const unsigned short *block0, const unsigned short *block1, const float *bias,
    float *y, long ldy) {
    switch (rows) {
#define CK_TILE(r) \
    case r: tile_2x16(r, x, k, block0, block1, bias, y, ldy); break;
        CK_TILE(1) CK_TILE(2) CK_TILE(3) CK_TILE(4) CK_TILE(5) CK_TILE(6)
        CK_TILE(7) CK_TILE(8) CK_TILE(9) CK_TILE(10) CK_TILE(11) CK_TILE(12)
#undef CK_TILE
    }
}

int ck_packed_f16_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

int ck_packed_gemm_f16(
    const float *x, long m, long k, const unsigned short *packed, long n, const float *bias, float *y, long ldy) {
    if (!ck_packed_f16_supported() || n % 32 != 0) return 0;
    // Output blocks outermost: each block's weights are read from memory once, then from cache
    // for the further tiles of rows.
    for (long b = 0; b < n / 16; b += 2) {
        const unsigned short *block0 = packed + b * k * 16, *block1 = block0 + k * 16;
        for (long t = 0; t < m; t += 12) {
            int rows = (int)(m - t < 12 ? m - t : 12);
            tile_rows(rows, x + t * k, k, block0, block1, bias + b * 16, y + t * ldy + b * 16, ldy);
        }
    }
    return 1;
}
#else
int ck_packed_f16_supported(void) { return 0; }

int ck_packed_gemm_f16(
    const float *x, long m, long k, const unsigned short *packed, long n, const float *bias, float *y, long ldy) {
    return 0;
}
#endif
