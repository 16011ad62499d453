// The BLAS is opened at run time, not linked. OpenBLAS picks its kernels for the CPU when it is
// loaded, and OpenBLAS 0.3.21 (Debian 12) does not know the Xeons this server runs on: it falls
// back to its Prescott (SSE3) kernels, sgemm at 33 GFLOPS on one core instead of 155 with its
// AVX-512 (SkylakeX) kernels. It reads OPENBLAS_CORETYPE as it loads, and a linked library loads
// before any code of ours runs, so the library is opened on first use, after choosing the core:
// SkylakeX where the OS has enabled AVX-512 (F, CD, BW, DQ, VL), Haswell with AVX2 and FMA,
// nothing otherwise. A value the user set is kept. `libblas.so.3` is Debian's alternative:
// OpenBLAS once libopenblas0-pthread is installed, the reference BLAS otherwise.
#define _GNU_SOURCE
#include "contextstore_blas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <x86_64-linux-gnu/cblas.h>
#elif defined(__aarch64__)
#include <aarch64-linux-gnu/cblas.h>
#else
#include <cblas.h>
#endif

static struct {
    void (*sgemm)(
        enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, const int, const int, const int, const float,
        const float *, const int, const float *, const int, const float, float *, const int);
    void (*sgemv)(
        enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, const int, const int, const float, const float *, const int,
        const float *, const int, const float, float *, const int);
    const char *path;
    const char *config;
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void choose_openblas_core(void) {
#if defined(__x86_64__)
    if (getenv("OPENBLAS_CORETYPE") != NULL) return;
    __builtin_cpu_init();
    const char *core = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl")) {
        core = "SkylakeX";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        core = "Haswell";
    }
    if (core != NULL) setenv("OPENBLAS_CORETYPE", core, 0);
#endif
}

static void open_blas(void) {
    choose_openblas_core();
    const char *name = "libblas.so.3";
    void *library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        fprintf(stderr, "cannot open the BLAS (%s): %s; install libopenblas0-pthread\n", name, dlerror());
        abort();
    }
    blas.sgemm = dlsym(library, "cblas_sgemm");
    blas.sgemv = dlsym(library, "cblas_sgemv");
    if (blas.sgemm == NULL || blas.sgemv == NULL) {
        fprintf(stderr, "%s has no cblas_sgemm or cblas_sgemv\n", name);
        abort();
    }
    Dl_info info;
    blas.path = dladdr((void *)blas.sgemm, &info) != 0 ? info.dli_fname : name;
    const char *(*config)(void) = (const char *(*)(void))dlsym(library, "openblas_get_config");
    blas.config = config != NULL ? config() : NULL;
    // Each call runs on its calling thread: OpenBLAS's own workers spin while idle and fight the
    // server's event loops for the cores (measured: search throughput halved at 4 connections);
    // callers split large work over cores themselves.
    void (*set_threads)(int) = (void (*)(int))dlsym(library, "openblas_set_num_threads");
    if (set_threads != NULL) set_threads(1);
}

static void require_blas(void) { pthread_once(&blas_once, open_blas); }

void contextstore_sgemm(
    int transpose_a, int transpose_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
    int ldb, float beta, float *c, int ldc) {
    require_blas();
    blas.sgemm(
        CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans, m, n, k, alpha,
        a, lda, b, ldb, beta, c, ldc);
}

void contextstore_sgemv(int m, int n, float alpha, const float *a, int lda, const float *x, float beta, float *y) {
    require_blas();
    blas.sgemv(CblasRowMajor, CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}

const char *contextstore_blas_path(void) {
    require_blas();
    return blas.path;
}

const char *contextstore_blas_config(void) {
    require_blas();
    return blas.config;
}
