/* Two ranks (processes) in hang patterns the report must name, for tests/tests/e2e_report.rs:
 *
 *   rccl_patterns deadlock   two communicators A and B over both ranks; rank 0 calls
 *                            AllReduce on A then B, rank 1 on B then A: each waits for the
 *                            other (a cycle of waits across communicators)
 *   rccl_patterns sendrecv   rank 0 sends to rank 1 twice, then receives from it; rank 1
 *                            receives once, then stays out of the communicator (sleeps): one
 *                            send without its receive, and a receive without its send
 *
 * A collective only queues its work: each rank synchronizes its stream after the calls whose
 * outcome it prints, and prints the call's result or else the communicator's asynchronous
 * error (so the waits above are in hipStreamSynchronize, and the cycle is on the device).
 * Each rank prints "rank r pid P ..." lines; the stand-in's timeout ($STANDIN_RCCL_TIMEOUT_MS,
 * -t MS) ends the waits. Runs on the stand-ins (tests/standins/build.sh). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../standins/standin_api.h"

static int me;

static ncclComm_t init(ncclUniqueId id) {
    ncclComm_t c = NULL;
    if (ncclCommInitRank(&c, 2, id, me) != ncclSuccess) {
        printf("rank %d init failed\n", me);
        exit(1);
    }
    return c;
}

/* The call's result, else the communicator's asynchronous error once the stream is synchronized. */
static ncclResult_t complete(ncclResult_t r, ncclComm_t c, hipStream_t s) {
    if (r != ncclSuccess) return r;
    hipStreamSynchronize(s);
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(c, &async) == ncclSuccess && async != ncclSuccess) return async;
    return r;
}

static void deadlock(ncclUniqueId a, ncclUniqueId b, hipStream_t s, float *buf) {
    ncclComm_t ca = init(a), cb = init(b);
    printf("rank %d pid %d comms %p %p\n", me, getpid(), (void *)ca, (void *)cb);
    fflush(stdout);
    ncclComm_t first = me == 0 ? ca : cb, second = me == 0 ? cb : ca;
    ncclResult_t r = complete(ncclAllReduce(buf, buf, 256, ncclFloat, ncclSum, first, s), first, s);
    printf("rank %d first -> %d\n", me, r);
    if (r == ncclSuccess)
        complete(ncclAllReduce(buf, buf, 256, ncclFloat, ncclSum, second, s), second, s);
}

static void sendrecv(ncclUniqueId a, hipStream_t s, float *buf) {
    ncclComm_t c = init(a);
    printf("rank %d pid %d comm %p\n", me, getpid(), (void *)c);
    fflush(stdout);
    if (me == 0) {
        ncclSend(buf, 64, ncclFloat, 1, c, s);
        ncclSend(buf, 64, ncclFloat, 1, c, s);
        ncclResult_t r = complete(ncclRecv(buf, 64, ncclFloat, 1, c, s), c, s);
        printf("rank 0 recv -> %d\n", r);
    } else {
        complete(ncclRecv(buf, 64, ncclFloat, 0, c, s), c, s);
        printf("rank 1 stays out\n");
        fflush(stdout);
        const char *t = getenv("STANDIN_RCCL_TIMEOUT_MS");
        usleep((useconds_t)((t ? atol(t) : 10000) + 500) * 1000);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s deadlock|sendrecv [-t MS]\n", argv[0]);
        return 2;
    }
    if (argc > 3 && !strcmp(argv[2], "-t")) setenv("STANDIN_RCCL_TIMEOUT_MS", argv[3], 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    ncclUniqueId a, b;
    ncclGetUniqueId(&a);
    ncclGetUniqueId(&b);
    pid_t kids[2];
    for (me = 0; me < 2; me++) {
        kids[me] = fork();
        if (kids[me] == 0) {
            hipSetDevice(me);
            hipStream_t s;
            hipStreamCreate(&s);
            float *buf;
            hipMalloc((void **)&buf, 1024 * sizeof(float));
            if (!strcmp(argv[1], "deadlock")) deadlock(a, b, s, buf);
            else sendrecv(a, s, buf);
            _exit(0);
        }
    }
    for (int q = 0; q < 2; q++) waitpid(kids[q], NULL, 0);
    printf("done\n");
    return 0;
}
