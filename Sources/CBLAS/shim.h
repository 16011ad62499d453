// Debian's libblas-dev installs the CBLAS header under the multiarch include directory; libblas.so
// resolves through the alternatives system to OpenBLAS once libopenblas0-pthread is installed.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stddef.h>

#if defined(__x86_64__)
#include <x86_64-linux-gnu/cblas.h>
#elif defined(__aarch64__)
#include <aarch64-linux-gnu/cblas.h>
#else
#include <cblas.h>
#endif

/// The file of the shared library that provides cblas_sgemv in this process, or NULL.
static inline const char *contextstore_blas_library_path(void) {
    Dl_info info;
    if (dladdr((void *)&cblas_sgemv, &info) != 0) return info.dli_fname;
    return NULL;
}

/// OpenBLAS's own description of its build (version, kernel, threads), or NULL for other BLAS.
static inline const char *contextstore_openblas_config(void) {
    const char *(*config)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_config");
    return config != NULL ? config() : NULL;
}

/// Asks OpenBLAS to run each call on the calling thread only (no effect on other BLAS builds).
static inline void contextstore_blas_use_calling_thread_only(void) {
    void (*set_threads)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (set_threads != NULL) set_threads(1);
}
