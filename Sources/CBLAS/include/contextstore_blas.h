// The BLAS calls this package makes, on a BLAS opened at run time (see blas.c for why).
#ifndef CONTEXTSTORE_BLAS_H
#define CONTEXTSTORE_BLAS_H

/// Row-major `c = alpha * op(a) * op(b) + beta * c`; op transposes when its flag is non-zero.
/// `c` is m x n; op(a) is m x k; op(b) is k x n.
void contextstore_sgemm(
    int transpose_a, int transpose_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
    int ldb, float beta, float *c, int ldc);

/// Row-major `y = alpha * a * x + beta * y` for an m x n matrix `a`.
void contextstore_sgemv(int m, int n, float alpha, const float *a, int lda, const float *x, float beta, float *y);

/// The file of the BLAS library opened.
const char *contextstore_blas_path(void);

/// OpenBLAS's description of its build and of the kernels it chose; NULL for another BLAS.
const char *contextstore_blas_config(void);

#endif
