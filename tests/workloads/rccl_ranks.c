/* N ranks of an RCCL program in N processes, for the multi-rank (hang) tests.
 *
 *   rccl_ranks [-n N] [-k K] [-c COUNT] [-s R:I] [-m R:I:COUNT] [-t MS] [-w FILE] [-S IDFILE]
 *     -n N      ranks (processes), default 4
 *     -k K      AllReduce iterations, default 3
 *     -c COUNT  elements per collective, default 1024
 *     -s R:I    rank R skips its collective number I (0-based count of its collectives) and
 *               then issues no more: the other ranks' collective I is queued (the call
 *               returns) and hangs on the device, so they block in the hipStreamSynchronize
 *               after it
 *     -m R:I:C  rank R issues its collective number I with C elements (a mismatch: every rank
 *               blocks in the hipStreamSynchronize after it, as on a GPU)
 *     -t MS     sets STANDIN_RCCL_TIMEOUT_MS=MS for the ranks (the stand-in's wait limit)
 *     -w FILE   each rank prints "rank r pid P waiting" and waits for FILE to exist before its
 *               first call (so that a tracer can start on the ranks' pids first)
 *     -S IDFILE one rank in this process, no fork: rank $SLURM_PROCID of $SLURM_NTASKS (as srun
 *               starts them); rank 0 writes the unique id to IDFILE (a shared folder), the
 *               others read it from there
 *
 * The parent calls ncclGetUniqueId and forks the ranks. Rank r: hipSetDevice(r % devices),
 * hipStreamCreate, ncclCommInitRank(&comm, N, id, r), hipMalloc'd buffers, then collectives
 * #0..#K-1 ncclAllReduce (float sum, on its stream) + hipStreamSynchronize, #K ncclBroadcast
 * (root 0), and #K+1/#K+2 a group { ncclAllReduce; ncclAllGather }, each followed by
 * hipStreamSynchronize and ncclCommGetAsyncError (a collective only queues its work: its
 * outcome is the call's result, else the communicator's asynchronous error once the stream is
 * synchronized), checking every result, then ncclCommDestroy (ncclCommAbort after a timeout).
 * Each rank prints (stdout, line-buffered)
 *   rank r pid P device D stream 0x... comm 0x...
 *   rank r pid P coll#i AllReduce -> ok|WRONG|<ncclResult name>
 *   rank r ok | rank r WRONG | rank r timed out | rank r skipped coll#I
 * Exit status: 0 if every rank is ok; 3 if some rank timed out (expected with -s; the parent
 * prints "timed out: ranks ..."); 1 on any other failure.
 * Runs on the stand-ins (tests/standins/build.sh) and, unchanged, on the real RCCL/HIP. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../standins/standin_api.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_TIMEOUT = 3, EXIT_SKIPPED = 4 };

static int nranks = 4, iters = 3, skip_rank = -1, skip_coll = -1;
static int mis_rank = -1, mis_coll = -1;
static size_t count = 1024, mis_count;
static const char *wait_file, *id_file;
static long timeout_ms = 10000;

static int me, pid;
static int coll_no;   /* collectives this rank has issued or skipped */
static int stopped;   /* this rank skipped one and issues no more */
static int wrong, timed_out, failed;

static const char *result_name(ncclResult_t r) {
    static const char *const names[] = {"ncclSuccess", "ncclUnhandledCudaError", "ncclSystemError",
                                        "ncclInternalError", "ncclInvalidArgument",
                                        "ncclInvalidUsage", "ncclRemoteError", "ncclInProgress"};
    return (unsigned)r < sizeof names / sizeof *names ? names[r] : "ncclUnknownResult";
}

/* The element count of this rank's next collective (another one for -m). */
static size_t count_for(int i) { return me == mis_rank && i == mis_coll ? mis_count : count; }

/* Waits (-w) for the go file. */
static void wait_for_go(void) {
    if (!wait_file) return;
    printf("rank %d pid %d waiting\n", me, getpid());
    fflush(stdout);
    while (access(wait_file, F_OK) != 0) usleep(20000);
}

/* Whether collective number coll_no is issued; counts it either way. */
static int issue(const char *name) {
    int i = coll_no++;
    if (stopped) return 0;
    if (me == skip_rank && i == skip_coll) {
        printf("rank %d pid %d coll#%d %s SKIPPED (issuing no more collectives)\n", me, pid, i, name);
        stopped = 1;
        return 0;
    }
    return 1;
}

static void report(int i, const char *name, ncclResult_t r, int ok, const char *detail) {
    if (r != ncclSuccess) {
        printf("rank %d pid %d coll#%d %s -> %s (%s)\n", me, pid, i, name, result_name(r),
               ncclGetErrorString(r));
        if (r == ncclSystemError) timed_out = 1;
        else failed = 1;
        return;
    }
    printf("rank %d pid %d coll#%d %s -> %s%s\n", me, pid, i, name, ok ? "ok" : "WRONG", detail);
    if (!ok) wrong = 1;
}

/* A collective's outcome as a program learns it: the call's result; if it queued the work, the
 * communicator's asynchronous error once the stream is synchronized (a wait that timed out on
 * the device: ncclSystemError). */
static ncclResult_t complete(ncclResult_t r, ncclComm_t comm, hipStream_t stream) {
    if (r != ncclSuccess) return r;
    hipStreamSynchronize(stream);
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(comm, &async) == ncclSuccess && async != ncclSuccess) return async;
    return r;
}

static float expect_allreduce(int it, size_t j) {
    /* sum over ranks r of (r + 1) * (it + 1) + j % 7: exact in float */
    return (float)((it + 1) * nranks * (nranks + 1) / 2) + (float)(nranks * (int)(j % 7));
}

static void fill_allreduce(float *buf, int it) {
    for (size_t j = 0; j < count; j++) buf[j] = (float)((me + 1) * (it + 1)) + (float)(j % 7);
}

static int check_allreduce(const float *buf, int it, char *detail, size_t len) {
    for (size_t j = 0; j < count; j++)
        if (buf[j] != expect_allreduce(it, j)) {
            snprintf(detail, len, " ([%zu] = %g, want %g)", j, buf[j], expect_allreduce(it, j));
            return 0;
        }
    snprintf(detail, len, " ([0] = %g)", count ? buf[0] : 0.0f);
    return 1;
}

static int run_rank(ncclUniqueId id) {
    pid = getpid();
    wait_for_go();
    int ndev = 0;
    hipError_t he = hipGetDeviceCount(&ndev);
    if (he != hipSuccess || ndev < 1) {
        printf("rank %d pid %d hipGetDeviceCount -> %s\n", me, pid, hipGetErrorString(he));
        return EXIT_FAIL;
    }
    int dev = me % ndev;
    hipSetDevice(dev);
    /* Forked ranks have identical heaps: taking `me` small blocks of the sizes of the
     * stand-ins' stream and communicator objects first gives each rank's stream and comm a
     * distinct address (best effort), so traces can tell them apart. */
    void **pad = calloc(2 * (size_t)me + 1, sizeof *pad);
    for (int q = 0; q < me; q++) {
        pad[2 * q] = malloc(32);
        pad[2 * q + 1] = malloc(112);
    }
    hipStream_t stream = NULL;
    if ((he = hipStreamCreate(&stream)) != hipSuccess) {
        printf("rank %d pid %d hipStreamCreate -> %s\n", me, pid, hipGetErrorString(he));
        return EXIT_FAIL;
    }
    ncclComm_t comm = NULL;
    ncclResult_t r = ncclCommInitRank(&comm, nranks, id, me);
    printf("rank %d pid %d device %d stream %#lx comm %#lx\n", me, pid, dev,
           (unsigned long)(uintptr_t)stream, (unsigned long)(uintptr_t)comm);
    if (r != ncclSuccess) {
        printf("rank %d pid %d ncclCommInitRank -> %s (%s)\n", me, pid, result_name(r),
               ncclGetErrorString(r));
        printf("rank %d %s\n", me, r == ncclSystemError ? "timed out" : "WRONG");
        return r == ncclSystemError ? EXIT_TIMEOUT : EXIT_FAIL;
    }

    float *send, *recv, *bcast, *send2, *recv2, *gsend, *gather;
    size_t bytes = count * sizeof(float);
    if (hipMalloc((void **)&send, bytes) || hipMalloc((void **)&recv, bytes) ||
        hipMalloc((void **)&bcast, bytes) || hipMalloc((void **)&send2, bytes) ||
        hipMalloc((void **)&recv2, bytes) || hipMalloc((void **)&gsend, bytes) ||
        hipMalloc((void **)&gather, bytes * (size_t)nranks)) {
        printf("rank %d pid %d hipMalloc failed\n", me, pid);
        return EXIT_FAIL;
    }
    char detail[128];

    for (int it = 0; it < iters && !timed_out && !failed; it++) {
        int i = coll_no;
        if (!issue("AllReduce")) continue;
        fill_allreduce(send, it);
        memset(recv, 0, bytes);
        r = complete(ncclAllReduce(send, recv, count_for(i), ncclFloat, ncclSum, comm, stream),
                     comm, stream);
        int ok = r == ncclSuccess && check_allreduce(recv, it, detail, sizeof detail);
        report(i, "AllReduce", r, ok, r == ncclSuccess ? detail : "");
    }

    if (!timed_out && !failed) {
        int i = coll_no;
        if (issue("Broadcast")) {
            for (size_t j = 0; j < count; j++) bcast[j] = me == 0 ? (float)(42 + j % 1000) : -1.0f;
            r = complete(ncclBroadcast(bcast, bcast, count_for(i), ncclFloat, 0, comm, stream),
                         comm, stream);
            int ok = 1;
            for (size_t j = 0; j < count && r == ncclSuccess; j++)
                if (bcast[j] != (float)(42 + j % 1000)) ok = 0;
            report(i, "Broadcast", r, ok, "");
        }
    }

    if (!timed_out && !failed) {
        int i = coll_no;
        int do_ar = issue("AllReduce");
        int do_ag = issue("AllGather");
        if (do_ar || do_ag) {
            fill_allreduce(send2, iters);
            memset(recv2, 0, bytes);
            for (size_t j = 0; j < count; j++) gsend[j] = (float)(me * 1000) + (float)(j % 1000);
            memset(gather, 0, bytes * (size_t)nranks);
            ncclGroupStart();
            if (do_ar) ncclAllReduce(send2, recv2, count, ncclFloat, ncclSum, comm, stream);
            if (do_ag) ncclAllGather(gsend, gather, count, ncclFloat, comm, stream);
            r = complete(ncclGroupEnd(), comm, stream);
            if (do_ar) {
                int ok = r == ncclSuccess && check_allreduce(recv2, iters, detail, sizeof detail);
                report(i, "AllReduce(grouped)", r, ok, r == ncclSuccess ? detail : "");
            }
            if (do_ag) {
                int ok = 1;
                for (int q = 0; q < nranks && r == ncclSuccess; q++)
                    for (size_t j = 0; j < count; j++)
                        if (gather[(size_t)q * count + j] != (float)(q * 1000) + (float)(j % 1000)) ok = 0;
                report(i + 1, "AllGather(grouped)", r, ok, "");
            }
        }
    }

    if (stopped) {
        /* Stay alive but out of the collectives, like a rank stuck elsewhere, until the others
         * gave up (forever if they never do). */
        if (timeout_ms > 0) usleep((useconds_t)(timeout_ms + 500) * 1000);
        else pause();
    }
    if (timed_out) ncclCommAbort(comm);
    else ncclCommDestroy(comm);
    hipFree(send); hipFree(recv); hipFree(bcast); hipFree(send2); hipFree(recv2);
    hipFree(gsend); hipFree(gather);
    hipStreamDestroy(stream);
    for (int q = 0; q < 2 * me; q++) free(pad[q]);
    free(pad);

    if (stopped) { printf("rank %d skipped coll#%d\n", me, skip_coll); return EXIT_SKIPPED; }
    if (timed_out) { printf("rank %d timed out\n", me); return EXIT_TIMEOUT; }
    if (failed || wrong) { printf("rank %d WRONG\n", me); return EXIT_FAIL; }
    printf("rank %d ok\n", me);
    return EXIT_OK;
}

/* -S: this process is one rank, as srun starts them; the unique id goes through a file. */
static int slurm_rank(void) {
    const char *r = getenv("SLURM_PROCID"), *n = getenv("SLURM_NTASKS");
    if (!r || !n) {
        fprintf(stderr, "-S needs SLURM_PROCID and SLURM_NTASKS (run it under srun)\n");
        return EXIT_FAIL;
    }
    me = atoi(r);
    nranks = atoi(n);
    const char *node = getenv("SLURMD_NODENAME");
    printf("rank %d pid %d node %s\n", me, getpid(), node ? node : "?");
    fflush(stdout);
    ncclUniqueId id;
    if (me == 0) {
        if (ncclGetUniqueId(&id) != ncclSuccess) return EXIT_FAIL;
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", id_file);
        FILE *f = fopen(tmp, "wb");
        if (!f || fwrite(&id, sizeof id, 1, f) != 1 || fclose(f) != 0 || rename(tmp, id_file) != 0) {
            perror(id_file);
            return EXIT_FAIL;
        }
    } else {
        FILE *f;
        while (!(f = fopen(id_file, "rb"))) usleep(20000);
        size_t got = fread(&id, sizeof id, 1, f);
        fclose(f);
        if (got != 1) return EXIT_FAIL;
    }
    int code = run_rank(id);
    fflush(stdout);
    return code;
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s [-n ranks] [-k iterations] [-c count] [-s rank:coll] [-m rank:coll:count] [-t timeout_ms] [-w file] [-S idfile]\n", argv0);
    exit(2);
}

int main(int argc, char **argv) {
    int opt;
    const char *t = getenv("STANDIN_RCCL_TIMEOUT_MS");
    if (t && *t) timeout_ms = atol(t);
    while ((opt = getopt(argc, argv, "n:k:c:s:m:t:w:S:h")) != -1) {
        switch (opt) {
        case 'n': nranks = atoi(optarg); break;
        case 'k': iters = atoi(optarg); break;
        case 'c': count = (size_t)strtoull(optarg, NULL, 10); break;
        case 's':
            if (sscanf(optarg, "%d:%d", &skip_rank, &skip_coll) != 2) usage(argv[0]);
            break;
        case 'm':
            if (sscanf(optarg, "%d:%d:%zu", &mis_rank, &mis_coll, &mis_count) != 3) usage(argv[0]);
            break;
        case 'w': wait_file = optarg; break;
        case 'S': id_file = optarg; break;
        case 't':
            timeout_ms = atol(optarg);
            setenv("STANDIN_RCCL_TIMEOUT_MS", optarg, 1);
            break;
        default: usage(argv[0]);
        }
    }
    if (nranks < 1 || iters < 0) usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (id_file) return slurm_rank();

    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
        printf("ncclGetUniqueId -> %s\n", result_name(r));
        return EXIT_FAIL;
    }
    unsigned long long magic;
    memcpy(&magic, id.internal, sizeof magic);
    printf("parent pid %d nranks %d id %016llx\n", getpid(), nranks, magic);
    fflush(stdout);

    pid_t *pids = calloc((size_t)nranks, sizeof *pids);
    for (int q = 0; q < nranks; q++) {
        pid_t p = fork();
        if (p < 0) { perror("fork"); return EXIT_FAIL; }
        if (p == 0) {
            me = q;
            int code = run_rank(id);
            fflush(stdout);
            _exit(code);
        }
        pids[q] = p;
    }

    int any_fail = 0, n_timeout = 0;
    int *codes = calloc((size_t)nranks, sizeof *codes);
    for (int q = 0; q < nranks; q++) {
        int st;
        while (waitpid(pids[q], &st, 0) < 0 && errno == EINTR) {}
        codes[q] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (codes[q] == EXIT_TIMEOUT) n_timeout++;
        else if (codes[q] != EXIT_OK && codes[q] != EXIT_SKIPPED) any_fail = 1;
    }
    if (n_timeout) {
        printf("timed out: ranks");
        for (int q = 0; q < nranks; q++)
            if (codes[q] == EXIT_TIMEOUT) printf(" %d", q);
        printf("\n");
    }
    if (any_fail) {
        printf("failed: ranks");
        for (int q = 0; q < nranks; q++)
            if (codes[q] != EXIT_OK && codes[q] != EXIT_SKIPPED && codes[q] != EXIT_TIMEOUT) printf(" %d (status %d)", q, codes[q]);
        printf("\n");
        return EXIT_FAIL;
    }
    if (n_timeout) return EXIT_TIMEOUT;
    printf("all %d ranks ok\n", nranks);
    return EXIT_OK;
}
