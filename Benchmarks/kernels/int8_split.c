// Whether splitting a large user's int8 scan over two cores pays: 514,804 rows of 384 components
// (the largest user of the scale ladder's 5M step, 198 MB of codes) scanned by one thread, then
// by two each taking half, five times.
//
//   clang -O2 -I Sources/CKernels/include Benchmarks/kernels/int8_split.c Sources/CKernels/int8_rows.c \
//       -o /tmp/int8_split -lpthread && /tmp/int8_split
#include "ckernels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { N = 384 };
static const long ROWS = 514804;
static signed char *codes, q[N];
static float *scales, *out;

typedef struct {
    long start, end;
} span;

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static void *scan(void *argument) {
    const span *rows = argument;
    ck_dot_i8_rows(q, 1, codes + rows->start * N, scales + rows->start, 0, N, rows->end - rows->start, out + rows->start);
    return 0;
}

int main(void) {
    codes = malloc((size_t)N * ROWS);
    scales = malloc(sizeof(float) * ROWS), out = malloc(sizeof(float) * ROWS);
    srand(7);
    for (long i = 0; i < N * ROWS; i++) codes[i] = (signed char)(rand() % 255 - 127);
    for (int i = 0; i < N; i++) q[i] = (signed char)(rand() % 255 - 127);
    for (long r = 0; r < ROWS; r++) scales[r] = 1;
    for (int run = 0; run < 5; run++) {
        span all = {0, ROWS}, first = {0, ROWS / 2}, second = {ROWS / 2, ROWS};
        double start = seconds();
        scan(&all);
        double one = seconds() - start;
        start = seconds();
        pthread_t helper;
        pthread_create(&helper, 0, scan, &first);
        scan(&second);
        pthread_join(helper, 0);
        double two = seconds() - start;
        printf("one thread %.2f ms, two %.2f ms (int8 %s)\n", one * 1e3, two * 1e3, ck_i8_rows_name(ck_i8_rows_chosen()));
    }
    return 0;
}
