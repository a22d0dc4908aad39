/* Calls one traced function in a loop and prints the time per call: the workload of the
 * probe-cost benchmark (tests/benches/probe_cost.rs). Runs on the HIP/RCCL stand-ins.
 *   call_loop hipGetDevice N        call-mode probe (one record at exit, an output argument)
 *   call_loop hipStreamSynchronize N split probe (entry and exit records)
 *   call_loop ncclAllReduce N       split probe with 7 arguments, one on the stack (1 rank)
 *   call_loop FUNCTION N THREADS [SECONDS]
 *                                   THREADS threads calling at once, N calls each, or for
 *                                   SECONDS (then N is ignored); prints the calls made */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../standins/standin_api.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static const char *f;
static long n;
static double seconds;
static ncclComm_t comm;
static float *buf;

/* One thread's loop; returns the calls it made. */
static long calls(void) {
    hipStream_t s;
    hipStreamCreate(&s);
    int dev;
    double until = seconds > 0 ? now() + seconds * 1e9 : 0;
    long i = 0;
    for (; until > 0 || i < n; i++) {
        if (!strcmp(f, "hipGetDevice")) hipGetDevice(&dev);
        else if (!strcmp(f, "hipStreamSynchronize")) hipStreamSynchronize(s);
        else if (!strcmp(f, "ncclAllReduce")) ncclAllReduce(buf, buf, 64, ncclFloat, ncclSum, comm, s);
        else exit(2);
        if (until > 0 && (i & 255) == 0 && now() >= until) break;
    }
    hipStreamDestroy(s);
    return until > 0 ? i + 1 : i;
}

static void *thread_main(void *out) {
    *(long *)out = calls();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FUNCTION N [THREADS [SECONDS]]\n", argv[0]);
        return 2;
    }
    f = argv[1];
    n = atol(argv[2]);
    int threads = argc > 3 ? atoi(argv[3]) : 1;
    seconds = argc > 4 ? atof(argv[4]) : 0;
    hipSetDevice(0);
    if (!strcmp(f, "ncclAllReduce")) {
        ncclUniqueId id;
        ncclGetUniqueId(&id);
        if (ncclCommInitRank(&comm, 1, id, 0) != ncclSuccess) return 1;
        hipMalloc((void **)&buf, 64 * sizeof(float));
    }
    double t0 = now();
    long total = 0;
    if (threads <= 1) {
        total = calls();
    } else {
        pthread_t *t = calloc(threads, sizeof *t);
        long *made = calloc(threads, sizeof *made);
        for (int k = 0; k < threads; k++) pthread_create(&t[k], NULL, thread_main, &made[k]);
        for (int k = 0; k < threads; k++) {
            pthread_join(t[k], NULL);
            total += made[k];
        }
    }
    double t1 = now();
    if (threads > 1)
        printf("%s %d threads %ld calls %.0f calls/s %.1f ns/call\n", f, threads, total,
               total / ((t1 - t0) / 1e9), (t1 - t0) / total * threads);
    else
        printf("%s %ld calls %.1f ns/call\n", f, total, (t1 - t0) / total);
    if (comm) ncclCommDestroy(comm);
    return 0;
}
