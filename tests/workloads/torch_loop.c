/* N ranks of a PyTorch-shaped training loop in N processes, for the hang tests on an
 * asynchronous GPU runtime (the HIP/RCCL stand-ins, or unchanged the real HIP/RCCL).
 *
 *   torch_loop [-n N] [-k K] [-c COUNT] [-s R:I[:MS]] [-m R:I:KIND] [-x R:I] [-p] [-2]
 *              [-t MS] [-P MS] [-w FILE] [-S IDFILE]
 *     -n N       ranks (processes), default 4
 *     -k K       steps, default 10
 *     -c COUNT   float elements per collective, default 1024
 *     -s R:I[:MS] rank R stalls in its own code (load_batch(), a plain function that sleeps)
 *                before its step I's collective, for MS ms (default: forever, until killed)
 *     -m R:I:KIND rank R issues step I's collective mismatched; KIND is count (2 x COUNT),
 *                dtype (ncclFloat64), op (ncclMax), type (ncclAllGather instead of
 *                ncclAllReduce) or root (every step's collective is then ncclBroadcast from
 *                root 0, and rank R's at step I from root 1)
 *     -x R:I     rank R exits (exit(0), its communicator not destroyed) before step I
 *     -p         poll only: no hipMemcpy; the step's result is copied with hipMemcpyAsync on
 *                the comm stream before `done` is recorded, and the main thread polls
 *                hipEventQuery(done) every POLL ms until it succeeds (nothing blocks)
 *     -2         two communicators A and B, each on its own comm stream; see below
 *     -t MS      sets STANDIN_RCCL_TIMEOUT_MS=MS for the ranks (the stand-in's wait limit on
 *                the device; 0 = forever)
 *     -P MS      the poll period of the watchdog (and of -p), default 100
 *     -w FILE    each rank prints "rank r pid P waiting" and waits for FILE to exist before its
 *                first call (so that a tracer can start on the ranks' pids first)
 *     -S IDFILE  one rank in this process, no fork: rank $SLURM_PROCID of $SLURM_NTASKS (as
 *                srun starts them); rank 0 writes the unique id(s) to IDFILE, the others read
 *                them from there
 *
 * The parent calls ncclGetUniqueId and forks the ranks. Rank r: hipSetDevice(r % devices);
 * a compute stream (hipStreamCreate: a blocking stream, ordered with the null stream like
 * PyTorch's default stream), a comm stream (hipStreamCreateWithFlags(hipStreamNonBlocking),
 * like ProcessGroupNCCL's), events `ready` and `done` (hipEventDisableTiming), ncclCommInitRank,
 * hipMalloc'd buffers (the send buffer filled once by hipMemcpy). Each step i = 1..K:
 *     load_batch(i)                                  (the -s stall is here)
 *     hipMemsetAsync(recv, 0, compute); hipLaunchKernel(train_kernel, compute)
 *     hipEventRecord(ready, compute); hipStreamWaitEvent(comm, ready)
 *     ncclAllReduce(send, recv, COUNT, ncclFloat32, ncclSum, comm, comm stream)   (seq = i)
 *     hipEventRecord(done, comm stream); hipStreamWaitEvent(compute, done)
 *     hipMemcpy(host, recv, DeviceToHost)            (loss.item(): waits for the null stream,
 *                                                     so for compute, so for the collective)
 *     ncclCommGetAsyncError(comm), then the result is checked
 * A watchdog thread per rank polls hipEventQuery(done) and ncclCommGetAsyncError(comm) every
 * POLL ms, as ProcessGroupNCCL's watchdog does (it prints nothing).
 *
 * -2: communicators A and B over all ranks, comm streams sA and sB. Even ranks issue A then
 * B, odd ranks B then A, and each rank's second collective waits on the device for its first
 * (hipEventRecord(mid, first stream); hipStreamWaitEvent(second stream, mid)); `done` is
 * recorded on the second stream. So rank 0's A waits for rank 1's A, queued on rank 1's sA
 * behind rank 1's B, which waits for rank 0's B, queued on rank 0's sB behind rank 0's A: a
 * wait-for cycle on the device at step 1 (without the `mid` waits each stream would progress
 * on its own and both collectives would complete). Every rank blocks in its step 1 hipMemcpy.
 *
 * Each rank prints (stdout, line-buffered):
 *   rank r pid P device D comm 0x... stream 0x...      (comm and comm stream; -2: A's)
 *   rank r pid P device D comm 0x... stream 0x... (B)  (-2 only: B's)
 *   rank r step i ok                                   after each step's copy and check
 *   rank r step i <ncclResult name>                    the communicator's error (a timeout on
 *                                                      the device: ncclSystemError), and stops
 *   rank r step i WRONG ([j] = x, want y)              a wrong result, and stops
 *   rank r stalls in load_batch before step i          (-s)
 *   rank r exits before step i                         (-x; then it exits 0)
 *   rank r done | rank r timed out | rank r WRONG      at the end
 * Exit status: 0 if every rank is done; 3 if some rank timed out (the parent prints
 * "timed out: ranks ..."); 1 otherwise. The parent prints "all N ranks done" on success. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../standins/standin_api.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_TIMEOUT = 3 };
enum kind { M_NONE, M_COUNT, M_DTYPE, M_OP, M_ROOT, M_TYPE };

static int nranks = 4, steps = 10, two_comms, poll_only;
static size_t count = 1024;
static int stall_rank = -1, stall_step = -1;
static long stall_ms = -1; /* -1: forever */
static int mis_rank = -1, mis_step = -1, mis_kind = M_NONE;
static int exit_rank = -1, exit_step = -1;
static long poll_ms = 100;
static const char *wait_file, *id_file;

static int me, pid;

static const char *result_name(ncclResult_t r) {
    static const char *const names[] = {"ncclSuccess", "ncclUnhandledCudaError", "ncclSystemError",
                                        "ncclInternalError", "ncclInvalidArgument",
                                        "ncclInvalidUsage", "ncclRemoteError", "ncclInProgress"};
    return (unsigned)r < sizeof names / sizeof *names ? names[r] : "ncclUnknownResult";
}

/* The "kernel": a real function of the program, whose address hipLaunchKernel gets. */
__attribute__((noinline)) void train_kernel(void) { __asm__ volatile(""); }

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* The rank's own code between steps: the -s straggler sleeps here (a stack sampler shows it). */
__attribute__((noinline)) void load_batch(int step) {
    if (me != stall_rank || step != stall_step) return;
    printf("rank %d stalls in load_batch before step %d\n", me, step);
    if (stall_ms < 0)
        for (;;) pause();
    sleep_ms(stall_ms);
}

/* ---------------------------------------------------------------- watchdog */

struct watch {
    hipEvent_t done;
    ncclComm_t comm, comm2;
    volatile int stop;
};

static void *watchdog(void *arg) {
    struct watch *w = arg;
    while (!w->stop) {
        ncclResult_t async;
        hipEventQuery(w->done);
        ncclCommGetAsyncError(w->comm, &async);
        if (w->comm2) ncclCommGetAsyncError(w->comm2, &async);
        sleep_ms(poll_ms);
    }
    return NULL;
}

/* ---------------------------------------------------------------- one rank */

static void wait_for_go(void) {
    if (!wait_file) return;
    printf("rank %d pid %d waiting\n", me, getpid());
    fflush(stdout);
    while (access(wait_file, F_OK) != 0) usleep(20000);
}

static float send_value(int r, size_t j) { return (float)(r + 1) + (float)(j % 7); }

/* Issues step `step`'s collective of this rank on (comm, stream). */
static ncclResult_t collective(int step, const float *send, float *recv, ncclComm_t comm,
                               hipStream_t stream) {
    int mis = me == mis_rank && step == mis_step;
    if (mis_kind == M_ROOT)
        return ncclBroadcast(send, recv, count, ncclFloat32, mis ? 1 : 0, comm, stream);
    if (!mis) return ncclAllReduce(send, recv, count, ncclFloat32, ncclSum, comm, stream);
    switch (mis_kind) {
    case M_COUNT: return ncclAllReduce(send, recv, 2 * count, ncclFloat32, ncclSum, comm, stream);
    case M_DTYPE: return ncclAllReduce(send, recv, count, ncclFloat64, ncclSum, comm, stream);
    case M_OP: return ncclAllReduce(send, recv, count, ncclFloat32, ncclMax, comm, stream);
    case M_TYPE: return ncclAllGather(send, recv, count, ncclFloat32, comm, stream);
    }
    return ncclInvalidUsage;
}

/* The expected result of a step's collective at j (AllReduce sum, or Broadcast from root 0). */
static float expect(size_t j) {
    if (mis_kind == M_ROOT) return send_value(0, j);
    return (float)(nranks * (nranks + 1) / 2) + (float)(nranks * (int)(j % 7));
}

static int run_rank(ncclUniqueId id, ncclUniqueId id2) {
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
    /* Forked ranks have identical heaps: `me` small blocks of the sizes of the stand-ins'
     * stream and communicator objects give each rank's handles distinct addresses (best
     * effort), so traces can tell them apart. */
    void **pad = calloc(2 * (size_t)me + 1, sizeof *pad);
    for (int q = 0; q < me; q++) {
        pad[2 * q] = malloc(32);
        pad[2 * q + 1] = malloc(112);
    }
    hipStream_t compute = NULL, cs[2] = {NULL, NULL};
    hipEvent_t ready = NULL, mid = NULL, done = NULL;
    if ((he = hipStreamCreate(&compute)) != hipSuccess ||
        (he = hipStreamCreateWithFlags(&cs[0], hipStreamNonBlocking)) != hipSuccess ||
        (two_comms && (he = hipStreamCreateWithFlags(&cs[1], hipStreamNonBlocking)) != hipSuccess) ||
        (he = hipEventCreateWithFlags(&ready, hipEventDisableTiming)) != hipSuccess ||
        (he = hipEventCreateWithFlags(&mid, hipEventDisableTiming)) != hipSuccess ||
        (he = hipEventCreateWithFlags(&done, hipEventDisableTiming)) != hipSuccess) {
        printf("rank %d pid %d stream/event creation -> %s\n", me, pid, hipGetErrorString(he));
        return EXIT_FAIL;
    }
    ncclComm_t comms[2] = {NULL, NULL};
    for (int c = 0; c < 1 + two_comms; c++) {
        ncclResult_t r = ncclCommInitRank(&comms[c], nranks, c ? id2 : id, me);
        printf("rank %d pid %d device %d comm %#lx stream %#lx%s\n", me, pid, dev,
               (unsigned long)(uintptr_t)comms[c], (unsigned long)(uintptr_t)cs[c],
               c ? " (B)" : "");
        if (r != ncclSuccess) {
            printf("rank %d pid %d ncclCommInitRank -> %s (%s)\n", me, pid, result_name(r),
                   ncclGetErrorString(r));
            printf("rank %d %s\n", me, r == ncclSystemError ? "timed out" : "WRONG");
            return r == ncclSystemError ? EXIT_TIMEOUT : EXIT_FAIL;
        }
    }

    /* Room for every mismatch: 2 x COUNT floats (count, dtype) and nranks x COUNT (type). */
    size_t bytes = count * sizeof(float), cap = bytes * (size_t)(nranks > 2 ? nranks : 2);
    float *send, *recv, *recv2, *host;
    if (hipMalloc((void **)&send, cap) || hipMalloc((void **)&recv, cap) ||
        hipMalloc((void **)&recv2, cap) || hipHostMalloc((void **)&host, cap, 0)) {
        printf("rank %d pid %d hipMalloc failed\n", me, pid);
        return EXIT_FAIL;
    }
    for (size_t j = 0; j < cap / sizeof(float); j++) host[j] = send_value(me, j % count);
    hipMemcpy(send, host, cap, hipMemcpyHostToDevice);

    struct watch w = {.done = done, .comm = comms[0], .comm2 = comms[1]};
    pthread_t wt;
    pthread_create(&wt, NULL, watchdog, &w);

    /* -2: even ranks A then B, odd ranks B then A (see the header). */
    int first = two_comms && (me & 1) ? 1 : 0, second = 1 - first;
    float *recvs[2] = {recv, recv2};
    int code = EXIT_OK, launch_warned = 0;
    for (int step = 1; step <= steps && code == EXIT_OK; step++) {
        if (me == exit_rank && step == exit_step) {
            printf("rank %d exits before step %d\n", me, step);
            fflush(stdout);
            exit(0);
        }
        load_batch(step);
        hipMemsetAsync(recv, 0, bytes, compute);
        dim3 grid = {1, 1, 1}, block = {64, 1, 1};
        void *args[1] = {NULL};
        he = hipLaunchKernel((const void *)train_kernel, grid, block, args, 0, compute);
        if (he != hipSuccess && !launch_warned++)
            printf("rank %d hipLaunchKernel -> %s (going on)\n", me, hipGetErrorString(he));
        hipEventRecord(ready, compute);
        hipStream_t last = cs[first];
        ncclResult_t r;
        if (!two_comms) {
            hipStreamWaitEvent(cs[0], ready, 0);
            r = collective(step, send, recv, comms[0], cs[0]);
        } else {
            hipStreamWaitEvent(cs[first], ready, 0);
            hipStreamWaitEvent(cs[second], ready, 0);
            r = collective(step, send, recvs[first], comms[first], cs[first]);
            hipEventRecord(mid, cs[first]);
            hipStreamWaitEvent(cs[second], mid, 0);
            if (r == ncclSuccess)
                r = collective(step, send, recvs[second], comms[second], cs[second]);
            last = cs[second];
        }
        if (poll_only) hipMemcpyAsync(host, recv, bytes, hipMemcpyDeviceToHost, last);
        hipEventRecord(done, last);
        hipStreamWaitEvent(compute, done, 0);
        if (!poll_only) {
            hipMemcpy(host, recv, bytes, hipMemcpyDeviceToHost); /* loss.item() */
        } else {
            while (hipEventQuery(done) == hipErrorNotReady) sleep_ms(poll_ms);
        }
        for (int c = 0; c < 1 + two_comms && r == ncclSuccess; c++) {
            ncclResult_t async = ncclSuccess;
            if (ncclCommGetAsyncError(comms[c], &async) == ncclSuccess) r = async;
        }
        if (r != ncclSuccess) {
            printf("rank %d step %d %s\n", me, step, result_name(r));
            code = r == ncclSystemError ? EXIT_TIMEOUT : EXIT_FAIL;
            break;
        }
        for (size_t j = 0; j < count; j++)
            if (host[j] != expect(j)) {
                printf("rank %d step %d WRONG ([%zu] = %g, want %g)\n", me, step, j,
                       (double)host[j], (double)expect(j));
                code = EXIT_FAIL;
                break;
            }
        if (code == EXIT_OK) printf("rank %d step %d ok\n", me, step);
    }

    w.stop = 1;
    pthread_join(wt, NULL);
    for (int c = 0; c < 1 + two_comms; c++) {
        if (code == EXIT_OK) ncclCommDestroy(comms[c]);
        else ncclCommAbort(comms[c]);
    }
    hipFree(send);
    hipFree(recv);
    hipFree(recv2);
    hipHostFree(host);
    hipEventDestroy(ready);
    hipEventDestroy(mid);
    hipEventDestroy(done);
    hipStreamDestroy(compute);
    for (int c = 0; c < 1 + two_comms; c++) hipStreamDestroy(cs[c]);
    for (int q = 0; q < 2 * me; q++) free(pad[q]);
    free(pad);
    printf("rank %d %s\n", me, code == EXIT_OK ? "done" : code == EXIT_TIMEOUT ? "timed out" : "WRONG");
    return code;
}

/* -S: this process is one rank, as srun starts them; the unique ids go through a file. */
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
    ncclUniqueId ids[2];
    if (me == 0) {
        if (ncclGetUniqueId(&ids[0]) != ncclSuccess || ncclGetUniqueId(&ids[1]) != ncclSuccess)
            return EXIT_FAIL;
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", id_file);
        FILE *f = fopen(tmp, "wb");
        if (!f || fwrite(ids, sizeof ids, 1, f) != 1 || fclose(f) != 0 || rename(tmp, id_file) != 0) {
            perror(id_file);
            return EXIT_FAIL;
        }
    } else {
        FILE *f;
        while (!(f = fopen(id_file, "rb"))) usleep(20000);
        size_t got = fread(ids, sizeof ids, 1, f);
        fclose(f);
        if (got != 1) return EXIT_FAIL;
    }
    int code = run_rank(ids[0], ids[1]);
    fflush(stdout);
    return code;
}

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [-n ranks] [-k steps] [-c count] [-s rank:step[:ms]] "
            "[-m rank:step:count|dtype|op|root|type] [-x rank:step] [-p] [-2] [-t timeout_ms] "
            "[-P poll_ms] [-w file] [-S idfile]\n",
            argv0);
    exit(2);
}

static int parse_kind(const char *k) {
    static const char *const names[] = {"", "count", "dtype", "op", "root", "type"};
    for (int i = 1; i < (int)(sizeof names / sizeof *names); i++)
        if (!strcmp(k, names[i])) return i;
    return M_NONE;
}

int main(int argc, char **argv) {
    int opt;
    char kind[16];
    while ((opt = getopt(argc, argv, "n:k:c:s:m:x:p2t:P:w:S:h")) != -1) {
        switch (opt) {
        case 'n': nranks = atoi(optarg); break;
        case 'k': steps = atoi(optarg); break;
        case 'c': count = (size_t)strtoull(optarg, NULL, 10); break;
        case 's':
            if (sscanf(optarg, "%d:%d:%ld", &stall_rank, &stall_step, &stall_ms) < 2) usage(argv[0]);
            break;
        case 'm':
            if (sscanf(optarg, "%d:%d:%15s", &mis_rank, &mis_step, kind) != 3 ||
                (mis_kind = parse_kind(kind)) == M_NONE)
                usage(argv[0]);
            break;
        case 'x':
            if (sscanf(optarg, "%d:%d", &exit_rank, &exit_step) != 2) usage(argv[0]);
            break;
        case 'p': poll_only = 1; break;
        case '2': two_comms = 1; break;
        case 't': setenv("STANDIN_RCCL_TIMEOUT_MS", optarg, 1); break;
        case 'P': poll_ms = atol(optarg); break;
        case 'w': wait_file = optarg; break;
        case 'S': id_file = optarg; break;
        default: usage(argv[0]);
        }
    }
    if (nranks < 1 || steps < 0 || count < 1 || poll_ms < 1 || optind != argc) usage(argv[0]);
    if (mis_kind == M_ROOT && nranks < 2) usage(argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (id_file) return slurm_rank();

    ncclUniqueId id, id2;
    if (ncclGetUniqueId(&id) != ncclSuccess || ncclGetUniqueId(&id2) != ncclSuccess) {
        printf("ncclGetUniqueId failed\n");
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
            int code = run_rank(id, id2);
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
        else if (codes[q] != EXIT_OK) any_fail = 1;
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
            if (codes[q] != EXIT_OK && codes[q] != EXIT_TIMEOUT) printf(" %d (status %d)", q, codes[q]);
        printf("\n");
        return EXIT_FAIL;
    }
    if (n_timeout) return EXIT_TIMEOUT;
    printf("all %d ranks done\n", nranks);
    return EXIT_OK;
}
