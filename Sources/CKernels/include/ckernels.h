#ifndef CONTEXTSTORE_CKERNELS_H
#define CONTEXTSTORE_CKERNELS_H

/// How a stored vector ("code") of n components is laid out.
typedef enum {
    /// n float32.
    CK_CODE_FLOAT32 = 0,
    /// n IEEE half-precision floats.
    CK_CODE_FLOAT16 = 1,
    /// A float32 scale s, then n int8 q: component i is s * q[i].
    CK_CODE_INT8 = 2,
} ck_code_format;

/// The size in bytes of one code of n components.
static inline long ck_code_bytes(ck_code_format format, long n) {
    switch (format) {
    case CK_CODE_FLOAT16: return 2 * n;
    case CK_CODE_INT8: return 4 + n;
    default: return 4 * n;
    }
}

/// A distance kernel between a float32 query and one stored code, in C so that each can be
/// compiled for the instruction set it needs (AVX2 + FMA + F16C, or the baseline) and picked once
/// at run time from what the processor supports. Returns the inner product, or the squared
/// Euclidean distance.
typedef float (*ck_code_kernel)(const float *query, const void *code, long n);

/// The fastest kernel this processor runs for codes of `format`: the inner product, or with
/// `squared_l2` the squared Euclidean distance. With `baseline_only`, the portable C kernel even
/// where a faster one runs (so tests cover both forms on one machine).
ck_code_kernel ck_select_code_kernel(ck_code_format format, int squared_l2, int baseline_only);

/// The compact scan of the flat index: for each of `rows` int8 codes of n components (each in
/// -127...127), out[r] = q_scale * scales[r] * (q . codes[r * n ...]), the product taken exactly
/// in int32 (a quarter of float32's bytes); with `norms`, 2 * that - norms[r] (for l2: larger is
/// closer). Runs the form `ck_i8_rows_chosen` picked.
void ck_dot_i8_rows(
    const signed char *q, float q_scale, const signed char *codes, const float *scales, const float *norms, long n,
    long rows, float *out);

/// The forms of `ck_dot_i8_rows`, by instruction set. All give the same bits.
typedef enum {
    CK_I8_ROWS_BASELINE = 0,
    /// maddubs + madd, 32 bytes at a time.
    CK_I8_ROWS_AVX2 = 1,
    /// dpbusd on 256-bit registers (AVX-VNNI).
    CK_I8_ROWS_AVX_VNNI = 2,
    /// dpbusd on 512-bit registers (AVX-512 VNNI).
    CK_I8_ROWS_AVX512_VNNI = 3,
    CK_I8_ROWS_KINDS = 4,
} ck_i8_rows_kernel;

/// Whether this processor runs `kernel`.
int ck_i8_rows_supported(ck_i8_rows_kernel kernel);

/// The form's name: "baseline", "avx2", "avx-vnni" or "avx512-vnni".
const char *ck_i8_rows_name(ck_i8_rows_kernel kernel);

/// `ck_dot_i8_rows` by `kernel`, which the processor must run (`ck_i8_rows_supported`).
void ck_dot_i8_rows_with(
    ck_i8_rows_kernel kernel, const signed char *q, float q_scale, const signed char *codes, const float *scales,
    const float *norms, long n, long rows, float *out);

/// The form `ck_dot_i8_rows` runs: of those this processor runs, the fastest on 1,024 rows of
/// 384 components, timed on the first call (a few milliseconds) and kept for the process.
ck_i8_rows_kernel ck_i8_rows_chosen(void);

/// Writes the int8 code of the n floats of `vector` to codes[0..<n] (each component times
/// 127 / its largest magnitude, in double precision, rounded half away from zero, within
/// -127...127) and returns the scale (that magnitude / 127), or 0 (and zeros) for a zero vector.
/// What the flat index's compact scan reads, for every row it stores.
float ck_encode_i8(const float *vector, long n, signed char *codes);

/// Writes the n floats of `vector` to halves[0..<n] as IEEE half-precision bit patterns, each
/// rounded to nearest even and clamped to the largest finite half (65504) in magnitude. What a
/// float16 flat index keeps of each row.
void ck_encode_f16(const float *vector, long n, unsigned short *halves);

/// The portable form of `ck_encode_f16`, which it runs where the processor lacks F16C (and
/// which tests run on any processor): the same bits.
void ck_encode_f16_portable(const float *vector, long n, unsigned short *halves);

/// Writes to rows[0...] the indexes of the `count` largest of scores[0..<n] (all n when fewer),
/// in no particular order, and returns how many it wrote: a bounded min-heap, one comparison for
/// most scores. Ties go to the lower index.
long ck_top_rows(const float *scores, long n, long count, long *rows);

/// Widens n IEEE half-precision floats to float32 (F16C when the processor has it).
void ck_decode_f16(const void *code, float *out, long n);

/// The name of the instruction set the selected kernels use ("avx2+fma+f16c" or "baseline").
const char *ck_kernel_isa(void);

/// y[t * ldy + o] = bias[o] + dot(x[t * k ...], w[o * k ...]) for t < m, o < n: a matrix product
/// for few rows (m), which streams each weight row once instead of packing the weights as a
/// general GEMM does. For a single short text the weights dominate the traffic, so this is the
/// fast path.
void ck_small_gemm(const float *x, long m, long k, const float *w, long n, const float *bias, float *y, long ldy);

/// How many float16 a weight matrix of n outputs and k inputs takes packed (`ck_pack_f16`).
long ck_packed_f16_count(long n, long k);

/// Packs a weight matrix w (n outputs x k inputs, row-major, as PyTorch stores it) as float16
/// (rounded to nearest even) in blocks of 16 outputs: packed[(b * k + j) * 16 + i] = w[b*16+i][j].
void ck_pack_f16(const float *w, long n, long k, unsigned short *packed);

/// y[t * ldy + o] = bias[o] + dot(x[t * k ...], w[o ...]) for t < m, o < n, with w packed by
/// `ck_pack_f16`: each weight read once, as float16, by AVX-512 FMAs over up to 12 rows at once.
/// Returns 0 (and does nothing) where the processor lacks AVX-512 or n is not a multiple of 32.
/// A slice of outputs [o, o + w), o and w multiples of 32, is the call with packed + o * k,
/// bias + o, y + o and n = w.
int ck_packed_gemm_f16(
    const float *x, long m, long k, const unsigned short *packed, long n, const float *bias, float *y, long ldy);

/// Whether `ck_packed_gemm_f16` runs on this processor (AVX-512).
int ck_packed_f16_supported(void);

/// Asks the processor to start loading the cache line at `address` (a vector about to be scored).
static inline void ck_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/// Asks the processor to start loading every cache line of `bytes` bytes at `address`.
static inline void ck_prefetch_range(const void *address, long bytes) {
    const char *p = (const char *)address;
    for (long offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}

#endif
