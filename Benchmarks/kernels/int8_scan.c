// Times each form of the flat index's int8 scan (`ck_dot_i8_rows_with`) this processor runs, on
// 1,000, 10,000 and 100,000 rows of 384 components (in L2, past it, in memory): best of 50 runs.
//
//   clang -O2 -I Sources/CKernels/include Benchmarks/kernels/int8_scan.c Sources/CKernels/int8_rows.c \
//       -o /tmp/int8_scan -lpthread && /tmp/int8_scan
#include "ckernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

int main(void) {
    enum { N = 384 };
    const long sizes[] = {1000, 10000, 100000};
    srand(7);
    for (int s = 0; s < 3; s++) {
        long rows = sizes[s];
        signed char *codes = malloc((size_t)N * rows), q[N];
        float *scales = malloc(sizeof(float) * rows), *out = malloc(sizeof(float) * rows);
        for (long i = 0; i < N * rows; i++) codes[i] = (signed char)(rand() % 255 - 127);
        for (int i = 0; i < N; i++) q[i] = (signed char)(rand() % 255 - 127);
        for (long r = 0; r < rows; r++) scales[r] = 1;
        printf("%6ld rows:", rows);
        for (int kernel = 0; kernel < CK_I8_ROWS_KINDS; kernel++) {
            if (!ck_i8_rows_supported((ck_i8_rows_kernel)kernel)) continue;
            double best = 1e9;
            for (int run = 0; run < 50; run++) {
                double start = seconds();
                ck_dot_i8_rows_with((ck_i8_rows_kernel)kernel, q, 1, codes, scales, 0, N, rows, out);
                double took = seconds() - start;
                if (took < best) best = took;
            }
            printf("  %s %.1f us (%.1f ns a row)", ck_i8_rows_name((ck_i8_rows_kernel)kernel), best * 1e6, best * 1e9 / rows);
        }
        printf("\n");
        free(codes), free(scales), free(out);
    }
    printf("chosen at start: %s\n", ck_i8_rows_name(ck_i8_rows_chosen()));
    return 0;
}
