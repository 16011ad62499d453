// The flat index's compact scan (`ck_dot_i8_rows`) in each form a processor may run, and the
// choice among them by a short measurement: an instruction set's presence says little about its
// speed (a core may split 512-bit work in two), so each form this processor runs is timed once
// on the same rows and the fastest is kept. Every form takes the product exactly in int32, so
// they give the same bits and the choice changes only the time.
#include "ckernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static inline float scaled_i8(int product, float q_scale, const float *scales, const float *norms, long r) {
    float value = (float)product * q_scale * scales[r];
    return norms ? 2 * value - norms[r] : value;
}

static void rows_baseline(
    const signed char *q, float q_scale, const signed char *codes, const float *scales, const float *norms, long n,
    long rows, float *out) {
    for (long r = 0; r < rows; r++) {
        const signed char *x = codes + r * n;
        int sum = 0;
        for (long i = 0; i < n; i++) sum += (int)q[i] * (int)x[i];
        out[r] = scaled_i8(sum, q_scale, scales, norms, r);
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static int sum_lanes_avx2(__m256i sum) {
    __m128i half = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    half = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0x4E));
    half = _mm_add_epi32(half, _mm_shuffle_epi32(half, 0xB1));
    return _mm_cvtsi128_si32(half);
}

// maddubs multiplies unsigned by signed bytes: |x| by q carrying x's sign gives x * q in pairs
// summed to int16 (at most 2 * 127 * 127, no saturation), then madd sums pairs of those to int32.
__attribute__((target("avx2"))) static inline __m256i product_avx2(__m256i sum, __m256i x, __m256i q, __m256i ones) {
    __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(q, x));
    return _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, ones));
}

// Four rows at a time: each block of the query is loaded once for the four, four independent
// sums keep the multipliers busy, and one hadd tree reduces the four sums together (1.6x the
// rows a second of one row at a time, on 10,000 rows in cache on an AMD EPYC).
__attribute__((target("avx2"))) static void rows_avx2(
    const signed char *q, float q_scale, const signed char *codes, const float *scales, const float *norms, long n,
    long rows, float *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    long whole = n - n % 32;
    long r = 0;
    for (; r + 4 <= rows; r += 4) {
        const signed char *x = codes + r * n;
        __m256i sum0 = _mm256_setzero_si256(), sum1 = sum0, sum2 = sum0, sum3 = sum0;
        for (long i = 0; i < whole; i += 32) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(q + i));
            sum0 = product_avx2(sum0, _mm256_loadu_si256((const __m256i *)(x + i)), qv, ones);
            sum1 = product_avx2(sum1, _mm256_loadu_si256((const __m256i *)(x + n + i)), qv, ones);
            sum2 = product_avx2(sum2, _mm256_loadu_si256((const __m256i *)(x + 2 * n + i)), qv, ones);
            sum3 = product_avx2(sum3, _mm256_loadu_si256((const __m256i *)(x + 3 * n + i)), qv, ones);
        }
        // hadd works within each 128-bit half: after two rounds, element j of each half holds
        // part of row j's sum, and the two halves added hold the four rows' sums.
        __m256i pairs = _mm256_hadd_epi32(_mm256_hadd_epi32(sum0, sum1), _mm256_hadd_epi32(sum2, sum3));
        int totals[4];
        _mm_storeu_si128(
            (__m128i *)totals, _mm_add_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1)));
        for (long k = 0; k < 4; k++) {
            for (long i = whole; i < n; i++) totals[k] += (int)q[i] * (int)x[k * n + i];
            out[r + k] = scaled_i8(totals[k], q_scale, scales, norms, r + k);
        }
    }
    for (; r < rows; r++) {
        const signed char *x = codes + r * n;
        __m256i sum = _mm256_setzero_si256();
        for (long i = 0; i < whole; i += 32) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(q + i));
            sum = product_avx2(sum, _mm256_loadu_si256((const __m256i *)(x + i)), qv, ones);
        }
        int total = sum_lanes_avx2(sum);
        for (long i = whole; i < n; i++) total += (int)q[i] * (int)x[i];
        out[r] = scaled_i8(total, q_scale, scales, norms, r);
    }
}

// The VNNI forms: dpbusd multiplies unsigned by signed bytes and adds each four products to an
// int32 lane in one instruction. x ^ 0x80 is x + 128 read as unsigned, so it sums
// (x + 128) . q = x . q + 128 * sum(q), and the query's part is subtracted once per row.

__attribute__((target("avx2,avxvnni"))) static void rows_avx_vnni(
    const signed char *q, float q_scale, const signed char *codes, const float *scales, const float *norms, long n,
    long rows, float *out) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    long whole = n - n % 32;
    int bias = 0;
    for (long i = 0; i < whole; i++) bias += 128 * (int)q[i];
    for (long r = 0; r < rows; r++) {
        const signed char *x = codes + r * n;
        // Two sums, so that consecutive dpbusd do not wait on each other.
        __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
        long i = 0;
        for (; i + 64 <= whole; i += 64) {
            __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + i)), flip);
            __m256i x1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + i + 32)), flip);
            sum0 = _mm256_dpbusd_avx_epi32(sum0, x0, _mm256_loadu_si256((const __m256i *)(q + i)));
            sum1 = _mm256_dpbusd_avx_epi32(sum1, x1, _mm256_loadu_si256((const __m256i *)(q + i + 32)));
        }
        if (i < whole) {
            __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + i)), flip);
            sum0 = _mm256_dpbusd_avx_epi32(sum0, x0, _mm256_loadu_si256((const __m256i *)(q + i)));
        }
        int total = sum_lanes_avx2(_mm256_add_epi32(sum0, sum1)) - bias;
        for (long j = whole; j < n; j++) total += (int)q[j] * (int)x[j];
        out[r] = scaled_i8(total, q_scale, scales, norms, r);
    }
}

#define CK_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

// The last partial block of 64 components is read with a mask: its missing bytes load as zero,
// so q contributes nothing there (and the bias counts only q's real components).
CK_AVX512_VNNI static void rows_avx512_vnni(
    const signed char *q, float q_scale, const signed char *codes, const float *scales, const float *norms, long n,
    long rows, float *out) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    long whole = n - n % 64;
    __mmask64 tail = n % 64 ? (__mmask64)((1ULL << (n % 64)) - 1) : 0;
    __m512i q_tail = _mm512_maskz_loadu_epi8(tail, q + whole);
    int bias = 0;
    for (long i = 0; i < n; i++) bias += 128 * (int)q[i];
    for (long r = 0; r < rows; r++) {
        const signed char *x = codes + r * n;
        __m512i sum0 = _mm512_setzero_si512(), sum1 = _mm512_setzero_si512();
        long i = 0;
        for (; i + 128 <= whole; i += 128) {
            __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(x + i), flip);
            __m512i x1 = _mm512_xor_si512(_mm512_loadu_si512(x + i + 64), flip);
            sum0 = _mm512_dpbusd_epi32(sum0, x0, _mm512_loadu_si512(q + i));
            sum1 = _mm512_dpbusd_epi32(sum1, x1, _mm512_loadu_si512(q + i + 64));
        }
        if (i < whole) {
            __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(x + i), flip);
            sum0 = _mm512_dpbusd_epi32(sum0, x0, _mm512_loadu_si512(q + i));
        }
        if (tail) {
            __m512i xt = _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, x + whole), flip);
            sum1 = _mm512_dpbusd_epi32(sum1, xt, q_tail);
        }
        int total = _mm512_reduce_add_epi32(_mm512_add_epi32(sum0, sum1)) - bias;
        out[r] = scaled_i8(total, q_scale, scales, norms, r);
    }
}
#endif

int ck_i8_rows_supported(ck_i8_rows_kernel kernel) {
    switch (kernel) {
    case CK_I8_ROWS_BASELINE: return 1;
#if defined(__x86_64__)
    case CK_I8_ROWS_AVX2: __builtin_cpu_init(); return __builtin_cpu_supports("avx2");
    case CK_I8_ROWS_AVX_VNNI:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni");
    case CK_I8_ROWS_AVX512_VNNI:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vnni");
#endif
    default: return 0;
    }
}

const char *ck_i8_rows_name(ck_i8_rows_kernel kernel) {
    switch (kernel) {
    case CK_I8_ROWS_AVX2: return "avx2";
    case CK_I8_ROWS_AVX_VNNI: return "avx-vnni";
    case CK_I8_ROWS_AVX512_VNNI: return "avx512-vnni";
    default: return "baseline";
    }
}

void ck_dot_i8_rows_with(
    ck_i8_rows_kernel kernel, const signed char *q, float q_scale, const signed char *codes, const float *scales,
    const float *norms, long n, long rows, float *out) {
    switch (kernel) {
#if defined(__x86_64__)
    case CK_I8_ROWS_AVX2: rows_avx2(q, q_scale, codes, scales, norms, n, rows, out); return;
    case CK_I8_ROWS_AVX_VNNI: rows_avx_vnni(q, q_scale, codes, scales, norms, n, rows, out); return;
    case CK_I8_ROWS_AVX512_VNNI: rows_avx512_vnni(q, q_scale, codes, scales, norms, n, rows, out); return;
#endif
    default: rows_baseline(q, q_scale, codes, scales, norms, n, rows, out); return;
    }
}

static double ck_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static ck_i8_rows_kernel chosen = CK_I8_ROWS_BASELINE;
static pthread_once_t choosing = PTHREAD_ONCE_INIT;

// 1,024 rows of 384 components (384 KiB, a user's rows as a search finds them in the cache),
// each form run once to warm up and then timed at its best of 7 runs: a few milliseconds.
static void choose(void) {
    enum { N = 384, ROWS = 1024 };
    signed char *codes = malloc((size_t)N * ROWS);
    float *scales = malloc(sizeof(float) * ROWS), *out = malloc(sizeof(float) * ROWS);
    signed char q[N];
    if (!codes || !scales || !out) {
        free(codes), free(scales), free(out);
        return;
    }
    unsigned state = 12345;
    for (long i = 0; i < (long)N * ROWS; i++) {
        state = state * 1103515245u + 12345u;
        codes[i] = (signed char)((int)(state >> 16) % 255 - 127);
    }
    for (long i = 0; i < N; i++) q[i] = codes[i * 7 % ((long)N * ROWS)];
    for (long r = 0; r < ROWS; r++) scales[r] = 1.0f / 127;
    double fastest = 0;
    for (int kernel = 0; kernel < CK_I8_ROWS_KINDS; kernel++) {
        if (!ck_i8_rows_supported((ck_i8_rows_kernel)kernel)) continue;
        ck_dot_i8_rows_with((ck_i8_rows_kernel)kernel, q, 1.0f / 127, codes, scales, 0, N, ROWS, out);
        double best = 0;
        for (int run = 0; run < 7; run++) {
            double start = ck_seconds();
            ck_dot_i8_rows_with((ck_i8_rows_kernel)kernel, q, 1.0f / 127, codes, scales, 0, N, ROWS, out);
            double took = ck_seconds() - start;
            if (run == 0 || took < best) best = took;
        }
        if (kernel == CK_I8_ROWS_BASELINE || best < fastest) {
            fastest = best;
            chosen = (ck_i8_rows_kernel)kernel;
        }
    }
    free(codes), free(scales), free(out);
}

ck_i8_rows_kernel ck_i8_rows_chosen(void) {
    pthread_once(&choosing, choose);
    return chosen;
}

void ck_dot_i8_rows(
    const signed char *q, float q_scale, const signed char *codes, const float *scales, const float *norms, long n,
    long rows, float *out) {
    ck_dot_i8_rows_with(ck_i8_rows_chosen(), q, q_scale, codes, scales, norms, n, rows, out);
}
