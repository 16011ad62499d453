#include "ckernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static float dot_baseline(const float *a, const float *b, long n) {
    float sum = 0;
    for (long i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float squared_l2_baseline(const float *a, const float *b, long n) {
    float sum = 0;
    for (long i = 0; i < n; i++) {
        float d = a[i] - b[i];
        sum += d * d;
    }
    return sum;
}

#if defined(__x86_64__)
// Four independent accumulators hide the FMA latency; 32 floats per iteration.
__attribute__((target("avx2,fma"))) static float horizontal_sum(__m256 v) {
    __m128 low = _mm256_castps256_ps128(v);
    __m128 high = _mm256_extractf128_ps(v, 1);
    __m128 sum = _mm_add_ps(low, high);
    sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    sum = _mm_add_ss(sum, _mm_shuffle_ps(sum, sum, 1));
    return _mm_cvtss_f32(sum);
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, long n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

__attribute__((target("avx2,fma"))) static float squared_l2_avx2(const float *a, const float *b, long n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2);
        s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) {
        float d = a[i] - b[i];
        sum += d * d;
    }
    return sum;
}

// Four rows of x against one weight row at a time: each weight load feeds four FMAs.
__attribute__((target("avx2,fma"))) static void small_gemm_avx2(
    const float *x, long m, long k, const float *w, long n, const float *bias, float *y, long ldy) {
    for (long o = 0; o < n; o++) {
        const float *wr = w + o * k;
        long t = 0;
        for (; t + 4 <= m; t += 4) {
            const float *x0 = x + t * k, *x1 = x0 + k, *x2 = x1 + k, *x3 = x2 + k;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            long j = 0;
            for (; j + 8 <= k; j += 8) {
                __m256 wv = _mm256_loadu_ps(wr + j);
                a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + j), a0);
                a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + j), a1);
                a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2 + j), a2);
                a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x3 + j), a3);
            }
            float s0 = horizontal_sum(a0), s1 = horizontal_sum(a1), s2 = horizontal_sum(a2), s3 = horizontal_sum(a3);
            for (; j < k; j++) {
                s0 += wr[j] * x0[j];
                s1 += wr[j] * x1[j];
                s2 += wr[j] * x2[j];
                s3 += wr[j] * x3[j];
            }
            float b = bias ? bias[o] : 0;
            y[t * ldy + o] = s0 + b;
            y[(t + 1) * ldy + o] = s1 + b;
            y[(t + 2) * ldy + o] = s2 + b;
            y[(t + 3) * ldy + o] = s3 + b;
        }
        for (; t < m; t++) y[t * ldy + o] = dot_avx2(x + t * k, wr, k) + (bias ? bias[o] : 0);
    }
}

static int has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

ck_pair_kernel ck_select_dot(void) {
#if defined(__x86_64__)
    if (has_avx2_fma()) return dot_avx2;
#endif
    return dot_baseline;
}

ck_pair_kernel ck_select_squared_l2(void) {
#if defined(__x86_64__)
    if (has_avx2_fma()) return squared_l2_avx2;
#endif
    return squared_l2_baseline;
}

const char *ck_kernel_isa(void) {
#if defined(__x86_64__)
    if (has_avx2_fma()) return "avx2+fma";
#endif
    return "baseline";
}

static void small_gemm_baseline(
    const float *x, long m, long k, const float *w, long n, const float *bias, float *y, long ldy) {
    for (long t = 0; t < m; t++)
        for (long o = 0; o < n; o++) y[t * ldy + o] = dot_baseline(x + t * k, w + o * k, k) + (bias ? bias[o] : 0);
}

void ck_small_gemm(const float *x, long m, long k, const float *w, long n, const float *bias, float *y, long ldy) {
#if defined(__x86_64__)
    if (has_avx2_fma()) {
        small_gemm_avx2(x, m, k, w, n, bias, y, ldy);
        return;
    }
#endif
    small_gemm_baseline(x, m, k, w, n, bias, y, ldy);
}
