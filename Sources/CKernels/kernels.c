#include "ckernels.h"
#include "half.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static float ck_dot_baseline(const float *a, const float *b, long n) {
    float sum = 0;
    for (long i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static float ck_squared_l2_baseline(const float *a, const float *b, long n) {
    float sum = 0;
    for (long i = 0; i < n; i++) {
        float d = a[i] - b[i];
        sum += d * d;
    }
    return sum;
}

#if defined(__x86_64__)
// Four independent accumulators hide the FMA latency; 32 floats per iteration.
__attribute__((target("avx2,fma"))) static float ck_horizontal_sum(__m256 v) {
    __m128 low = _mm256_castps256_ps128(v);
    __m128 high = _mm256_extractf128_ps(v, 1);
    __m128 sum = _mm_add_ps(low, high);
    sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    sum = _mm_add_ss(sum, _mm_shuffle_ps(sum, sum, 1));
    return _mm_cvtss_f32(sum);
}

__attribute__((target("avx2,fma"))) static float ck_dot_avx2(const float *a, const float *b, long n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float sum = ck_horizontal_sum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

__attribute__((target("avx2,fma"))) static float ck_squared_l2_avx2(const float *a, const float *b, long n) {
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
    float sum = ck_horizontal_sum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
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
            float s0 = ck_horizontal_sum(a0), s1 = ck_horizontal_sum(a1), s2 = ck_horizontal_sum(a2), s3 = ck_horizontal_sum(a3);
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
        for (; t < m; t++) y[t * ldy + o] = ck_dot_avx2(x + t * k, wr, k) + (bias ? bias[o] : 0);
    }
}

static int ck_has_avx2_fma_f16c(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#endif

const char *ck_kernel_isa(void) {
#if defined(__x86_64__)
    if (ck_has_avx2_fma_f16c()) return "avx2+fma+f16c";
#endif
    return "baseline";
}

static void small_gemm_baseline(
    const float *x, long m, long k, const float *w, long n, const float *bias, float *y, long ldy) {
    for (long t = 0; t < m; t++)
        for (long o = 0; o < n; o++) y[t * ldy + o] = ck_dot_baseline(x + t * k, w + o * k, k) + (bias ? bias[o] : 0);
}

void ck_small_gemm(const float *x, long m, long k, const float *w, long n, const float *bias, float *y, long ldy) {
#if defined(__x86_64__)
    if (ck_has_avx2_fma_f16c()) {
        small_gemm_avx2(x, m, k, w, n, bias, y, ldy);
        return;
    }
#endif
    small_gemm_baseline(x, m, k, w, n, bias, y, ldy);
}

// MARK: - Kernels between a float32 query and a stored code


static float code_dot_f32_baseline(const float *q, const void *code, long n) {
    return ck_dot_baseline(q, (const float *)code, n);
}

static float code_l2_f32_baseline(const float *q, const void *code, long n) {
    return ck_squared_l2_baseline(q, (const float *)code, n);
}

static float code_dot_f16_baseline(const float *q, const void *code, long n) {
    const unsigned short *x = code;
    float sum = 0;
    for (long i = 0; i < n; i++) sum += q[i] * half_to_float(x[i]);
    return sum;
}

static float code_l2_f16_baseline(const float *q, const void *code, long n) {
    const unsigned short *x = code;
    float sum = 0;
    for (long i = 0; i < n; i++) {
        float d = q[i] - half_to_float(x[i]);
        sum += d * d;
    }
    return sum;
}

static float code_dot_i8_baseline(const float *q, const void *code, long n) {
    float scale;
    memcpy(&scale, code, sizeof scale);
    const signed char *x = (const signed char *)code + 4;
    float sum = 0;
    for (long i = 0; i < n; i++) sum += q[i] * (float)x[i];
    return sum * scale;
}

static float code_l2_i8_baseline(const float *q, const void *code, long n) {
    float scale;
    memcpy(&scale, code, sizeof scale);
    const signed char *x = (const signed char *)code + 4;
    float sum = 0;
    for (long i = 0; i < n; i++) {
        float d = q[i] - scale * (float)x[i];
        sum += d * d;
    }
    return sum;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static float code_dot_f32_avx2(const float *q, const void *code, long n) {
    return ck_dot_avx2(q, (const float *)code, n);
}

__attribute__((target("avx2,fma"))) static float code_l2_f32_avx2(const float *q, const void *code, long n) {
    return ck_squared_l2_avx2(q, (const float *)code, n);
}

// Half the bytes of float32 per component: F16C widens eight halves per instruction.
__attribute__((target("avx2,fma,f16c"))) static float code_dot_f16_avx2(const float *q, const void *code, long n) {
    const unsigned short *x = code;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8)));
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), x0, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), x1, s1);
    }
    float sum = ck_horizontal_sum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) sum += q[i] * half_to_float(x[i]);
    return sum;
}

__attribute__((target("avx2,fma,f16c"))) static float code_l2_f16_avx2(const float *q, const void *code, long n) {
    const unsigned short *x = code;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
        __m256 d1 =
            _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + 8))));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    float sum = ck_horizontal_sum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) {
        float d = q[i] - half_to_float(x[i]);
        sum += d * d;
    }
    return sum;
}

// A quarter of the bytes of float32: eight int8 widened to float per step, the scale applied once.
__attribute__((target("avx2,fma"))) static float code_dot_i8_avx2(const float *q, const void *code, long n) {
    float scale;
    memcpy(&scale, code, sizeof scale);
    const signed char *x = (const signed char *)code + 4;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(x + i));
        __m256 x0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
        __m256 x1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8)));
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), x0, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), x1, s1);
    }
    float sum = ck_horizontal_sum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) sum += q[i] * (float)x[i];
    return sum * scale;
}

__attribute__((target("avx2,fma"))) static float code_l2_i8_avx2(const float *q, const void *code, long n) {
    float scale;
    memcpy(&scale, code, sizeof scale);
    const signed char *x = (const signed char *)code + 4;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), vs = _mm256_set1_ps(scale);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(x + i));
        __m256 x0 = _mm256_mul_ps(vs, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)));
        __m256 x1 = _mm256_mul_ps(vs, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8))));
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), x0);
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), x1);
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    float sum = ck_horizontal_sum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) {
        float d = q[i] - scale * (float)x[i];
        sum += d * d;
    }
    return sum;
}
#endif

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) static void decode_f16_avx2(const unsigned short *x, float *out, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) out[i] = half_to_float(x[i]);
}
#endif

#define CK_HALF_MAX 65504.0f

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) static void encode_f16_avx2(const float *x, long n, unsigned short *out) {
    const __m256 top = _mm256_set1_ps(CK_HALF_MAX), bottom = _mm256_set1_ps(-CK_HALF_MAX);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(x + i), bottom), top);
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; i++) out[i] = float_to_half(fminf(fmaxf(x[i], -CK_HALF_MAX), CK_HALF_MAX));
}
#endif

void ck_encode_f16_portable(const float *vector, long n, unsigned short *halves) {
    for (long i = 0; i < n; i++) halves[i] = float_to_half(fminf(fmaxf(vector[i], -CK_HALF_MAX), CK_HALF_MAX));
}

void ck_encode_f16(const float *vector, long n, unsigned short *halves) {
#if defined(__x86_64__)
    if (ck_has_avx2_fma_f16c()) return encode_f16_avx2(vector, n, halves);
#endif
    ck_encode_f16_portable(vector, n, halves);
}

// components[from..<n] of the int8 code: each times `steps` in double, rounded half away from
// zero as round() does (without its call): |scaled| is at most about 127, so the truncation and
// the remainder are exact.
static void encode_i8_from(const float *vector, long from, long n, double steps, signed char *codes) {
    for (long i = from; i < n; i++) {
        double scaled = (double)vector[i] * steps;
        long step = (long)scaled;
        double rest = scaled - (double)step;
        step += (rest >= 0.5) - (rest <= -0.5);
        codes[i] = (signed char)(step < -127 ? -127 : step > 127 ? 127 : step);
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static float largest_magnitude_avx2(const float *vector, long n) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 largest = _mm256_setzero_ps();
    long i = 0;
    for (; i + 8 <= n; i += 8) largest = _mm256_max_ps(largest, _mm256_and_ps(_mm256_loadu_ps(vector + i), magnitude));
    float lanes[8];
    _mm256_storeu_ps(lanes, largest);
    float result = 0;
    for (int lane = 0; lane < 8; lane++) result = fmaxf(result, lanes[lane]);
    for (; i < n; i++) result = fmaxf(result, fabsf(vector[i]));
    return result;
}

// The same steps as encode_i8_from, four components at a time in double: truncation, the
// remainder's half away from zero, the clamp, then the narrowing.
__attribute__((target("avx2,fma"))) static void encode_i8_avx2(
    const float *vector, long n, double steps, signed char *codes) {
    const __m256d scale = _mm256_set1_pd(steps), one = _mm256_set1_pd(1);
    const __m256d half = _mm256_set1_pd(0.5), minus_half = _mm256_set1_pd(-0.5);
    const __m256d low = _mm256_set1_pd(-127), high = _mm256_set1_pd(127);
    long i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d scaled = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(vector + i)), scale);
        __m256d whole = _mm256_round_pd(scaled, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __m256d rest = _mm256_sub_pd(scaled, whole);
        whole = _mm256_add_pd(whole, _mm256_and_pd(_mm256_cmp_pd(rest, half, _CMP_GE_OQ), one));
        whole = _mm256_sub_pd(whole, _mm256_and_pd(_mm256_cmp_pd(rest, minus_half, _CMP_LE_OQ), one));
        __m128i words = _mm256_cvttpd_epi32(_mm256_min_pd(_mm256_max_pd(whole, low), high));
        __m128i shorts = _mm_packs_epi32(words, words);
        __m128i bytes = _mm_packs_epi16(shorts, shorts);
        int four = _mm_cvtsi128_si32(bytes);
        memcpy(codes + i, &four, 4);
    }
    encode_i8_from(vector, i, n, steps, codes);
}
#endif

float ck_encode_i8(const float *vector, long n, signed char *codes) {
    float largest = 0;
#if defined(__x86_64__)
    int avx2 = ck_has_avx2_fma_f16c();
    if (avx2) {
        largest = largest_magnitude_avx2(vector, n);
    } else
#endif
        for (long i = 0; i < n; i++) largest = fmaxf(largest, fabsf(vector[i]));
    if (!(largest > 0)) {
        memset(codes, 0, (size_t)n);
        return 0;
    }
    // In double: a subnormal largest cannot make the steps overflow or the scale underflow.
    double steps = 127.0 / (double)largest;
#if defined(__x86_64__)
    if (avx2) {
        encode_i8_avx2(vector, n, steps, codes);
    } else
#endif
        encode_i8_from(vector, 0, n, steps, codes);
    return (float)((double)largest / 127.0);
}

// Whether (sa, ra) ranks below (sb, rb): a lower score, or an equal one at a higher index.
static inline int ranks_below(float sa, long ra, float sb, long rb) { return sa < sb || (sa == sb && ra > rb); }

// Puts row i (of `score`) in place of the lowest kept row, rows[0], and restores the heap.
static inline void replace_lowest(const float *scores, long size, long *rows, float score, long i) {
    long parent = 0;
    for (;;) {
        long child = 2 * parent + 1;
        if (child >= size) break;
        if (child + 1 < size && ranks_below(scores[rows[child + 1]], rows[child + 1], scores[rows[child]], rows[child]))
            child++;
        if (!ranks_below(scores[rows[child]], rows[child], score, i)) break;
        rows[parent] = rows[child];
        parent = child;
    }
    rows[parent] = i;
}

long ck_top_rows(const float *scores, long n, long count, long *rows) {
    if (count <= 0) return 0;
    long size = 0, i = 0;
    // rows[0] is the lowest kept: once the heap is full, a new score must beat it to enter.
    for (; i < n && size < count; i++) {
        float score = scores[i];
        long child = size++;
        while (child > 0) {
            long parent = (child - 1) / 2;
            if (!ranks_below(score, i, scores[rows[parent]], rows[parent])) break;
            rows[child] = rows[parent];
            child = parent;
        }
        rows[child] = i;
    }
    if (size < count) return size;
    // Every kept row has a lower index than the rows still to come, so one of those enters only
    // with a higher score (ties go to the lower index). Blocks of 16 with none above the lowest
    // kept score, most of them once the heap holds good rows, cost one vector comparison.
    float lowest = scores[rows[0]];
    for (; i < n; i += 16) {
        long end = i + 16 < n ? i + 16 : n;
        int above = 0;
        for (long j = i; j < end; j++) above |= scores[j] > lowest;
        if (!above) continue;
        for (long j = i; j < end; j++) {
            if (!(scores[j] > lowest)) continue;
            replace_lowest(scores, size, rows, scores[j], j);
            lowest = scores[rows[0]];
        }
    }
    return size;
}

void ck_decode_f16(const void *code, float *out, long n) {
#if defined(__x86_64__)
    if (ck_has_avx2_fma_f16c()) return decode_f16_avx2(code, out, n);
#endif
    const unsigned short *x = code;
    for (long i = 0; i < n; i++) out[i] = half_to_float(x[i]);
}

ck_code_kernel ck_select_code_kernel(ck_code_format format, int squared_l2, int baseline_only) {
#if defined(__x86_64__)
    if (!baseline_only && ck_has_avx2_fma_f16c()) {
        switch (format) {
        case CK_CODE_FLOAT16: return squared_l2 ? code_l2_f16_avx2 : code_dot_f16_avx2;
        case CK_CODE_INT8: return squared_l2 ? code_l2_i8_avx2 : code_dot_i8_avx2;
        default: return squared_l2 ? code_l2_f32_avx2 : code_dot_f32_avx2;
        }
    }
#endif
    switch (format) {
    case CK_CODE_FLOAT16: return squared_l2 ? code_l2_f16_baseline : code_dot_f16_baseline;
    case CK_CODE_INT8: return squared_l2 ? code_l2_i8_baseline : code_dot_i8_baseline;
    default: return squared_l2 ? code_l2_f32_baseline : code_dot_f32_baseline;
    }
}
