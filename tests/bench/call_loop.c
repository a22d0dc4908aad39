/* Calls one traced function in a loop and prints the time per call: the workload of the
 * probe-cost benchmark (tests/benches/probe_cost.rs). Runs on the HIP/RCCL stand-ins.
 *   call_loop hipGetDevice N        call-mode probe (one record at exit, an output argument)
 *   call_loop hipStreamSynchronize N split probe (entry and exit records)
 *   call_loop ncclAllReduce N       split probe with 7 arguments, one on the stack (1 rank) */
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

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FUNCTION N\n", argv[0]);
        return 2;
    }
    const char *f = argv[1];
    long n = atol(argv[2]);
    hipSetDevice(0);
    hipStream_t s;
    hipStreamCreate(&s);
    ncclComm_t comm = NULL;
    float *buf = NULL;
    if (!strcmp(f, "ncclAllReduce")) {
        ncclUniqueId id;
        ncclGetUniqueId(&id);
        if (ncclCommInitRank(&comm, 1, id, 0) != ncclSuccess) return 1;
        hipMalloc((void **)&buf, 64 * sizeof(float));
    }
    int dev;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (!strcmp(f, "hipGetDevice")) hipGetDevice(&dev);
        else if (!strcmp(f, "hipStreamSynchronize")) hipStreamSynchronize(s);
        else if (!strcmp(f, "ncclAllReduce")) ncclAllReduce(buf, buf, 64, ncclFloat, ncclSum, comm, s);
        else return 2;
    }
    double t1 = now();
    printf("%s %ld calls %.1f ns/call\n", f, n, (t1 - t0) / n);
    if (comm) ncclCommDestroy(comm);
    return 0;
}
