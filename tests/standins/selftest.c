/* Self-test of the stand-ins' asynchronous model (hip_standin.c, rccl_standin.c): each
 * behaviour their headers promise, timed with margins wide enough for a loaded 2-core VM.
 *
 *   selftest            runs everything: the HIP checks here, then each RCCL scenario in a
 *                       fresh process (this program again, with its name), whose parent forks
 *                       2 ranks before any HIP call
 *   selftest SCENARIO   one RCCL scenario: coll, mismatch, timeout, sync
 *
 * Prints "ok - WHAT" or "FAIL - WHAT (detail)" per check and "selftest: N checks, M failed";
 * exits 0 only if none failed. Built and run by `STANDIN_SELFTEST=1 tests/standins/build.sh
 * OUTDIR` (tests/standins/selftest.sh). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "standin_api.h"

static int checks, failed;
static char who[32] = "";

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        checks++;                                                                     \
        if (cond) {                                                                   \
            printf("%sok - ", who);                                                   \
        } else {                                                                      \
            failed++;                                                                 \
            printf("%sFAIL - ", who);                                                 \
        }                                                                             \
        printf(__VA_ARGS__);                                                          \
        printf("\n");                                                                 \
    } while (0)

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void kernel_us(long us) {
    char b[32];
    snprintf(b, sizeof b, "%ld", us);
    setenv("STANDIN_HIP_KERNEL_US", b, 1);
}

__attribute__((noinline)) static void kern(void) { __asm__ volatile(""); }

static hipError_t launch(hipStream_t s) {
    dim3 g = {1, 1, 1}, b = {1, 1, 1};
    return hipLaunchKernel((const void *)kern, g, b, NULL, 0, s);
}

/* ---------------------------------------------------------------- HIP */

static void t_query_and_sync(void) {
    hipStream_t s;
    hipStreamCreateWithFlags(&s, hipStreamNonBlocking);
    kernel_us(300000);
    double t0 = now_ms();
    hipError_t e = launch(s);
    double dt = now_ms() - t0;
    CHECK(e == hipSuccess && dt < 50, "hipLaunchKernel returns at once (%d, %.1f ms)", e, dt);
    e = hipStreamQuery(s);
    CHECK(e == hipErrorNotReady, "hipStreamQuery while a 300 ms kernel runs: %d (want 600)", e);
    e = hipStreamSynchronize(s);
    dt = now_ms() - t0;
    CHECK(e == hipSuccess && dt >= 250, "hipStreamSynchronize waits for the kernel (%.0f ms)", dt);
    e = hipStreamQuery(s);
    CHECK(e == hipSuccess, "hipStreamQuery once drained: %d (want 0)", e);
    hipStreamDestroy(s);
}

static void t_event_point(void) {
    hipStream_t s;
    hipEvent_t ev, fresh;
    hipStreamCreateWithFlags(&s, hipStreamNonBlocking);
    hipEventCreate(&ev);
    hipEventCreate(&fresh);
    CHECK(hipEventQuery(fresh) == hipSuccess, "an event never recorded is complete");
    kernel_us(200000);
    double t0 = now_ms();
    launch(s);
    hipEventRecord(ev, s);
    launch(s);
    CHECK(hipEventQuery(ev) == hipErrorNotReady, "hipEventQuery before the point: 600");
    hipEventSynchronize(ev);
    double dt = now_ms() - t0;
    CHECK(dt >= 150 && dt < 350, "hipEventSynchronize waits for the first kernel only (%.0f ms)", dt);
    CHECK(hipEventQuery(ev) == hipSuccess && hipStreamQuery(s) == hipErrorNotReady,
          "the event is complete while the stream's second kernel still runs");
    hipStreamSynchronize(s);
    dt = now_ms() - t0;
    CHECK(dt >= 350, "the stream drains after both kernels (%.0f ms)", dt);
    hipEvent_t b;
    hipEventCreate(&b);
    launch(s);
    hipEventRecord(b, s);
    float ms = 0;
    hipError_t e = hipEventElapsedTime(&ms, ev, b);
    CHECK(e == hipErrorNotReady, "hipEventElapsedTime before the stop event completed: %d", e);
    hipEventSynchronize(b);
    e = hipEventElapsedTime(&ms, ev, b);
    CHECK(e == hipSuccess && ms >= 300, "hipEventElapsedTime between the points: %.0f ms", ms);
    hipEventDestroy(ev);
    hipEventDestroy(fresh);
    hipEventDestroy(b);
    hipStreamDestroy(s);
}

static void t_wait_event(void) {
    hipStream_t s1, s2, s3;
    hipEvent_t ev;
    hipStreamCreateWithFlags(&s1, hipStreamNonBlocking);
    hipStreamCreateWithFlags(&s2, hipStreamNonBlocking);
    hipStreamCreateWithFlags(&s3, hipStreamNonBlocking);
    hipEventCreate(&ev);
    int *flag, *flag2;
    hipMalloc((void **)&flag, sizeof *flag);
    hipMalloc((void **)&flag2, sizeof *flag2);
    static const int one = 1;
    int out = -1, out2 = -1;
    hipMemset(flag, 0, sizeof *flag);
    hipMemset(flag2, 0, sizeof *flag2);
    kernel_us(200000);
    double t0 = now_ms();
    launch(s1);
    hipMemcpyAsync(flag, &one, sizeof one, hipMemcpyHostToDevice, s1);
    hipMemcpyAsync(flag2, &one, sizeof one, hipMemcpyHostToDevice, s1);
    hipEventRecord(ev, s1);
    hipStreamWaitEvent(s2, ev, 0);
    hipMemcpyAsync(&out, flag, sizeof out, hipMemcpyDeviceToHost, s2);
    hipMemcpyAsync(&out2, flag2, sizeof out2, hipMemcpyDeviceToHost, s3); /* no wait */
    hipStreamSynchronize(s3);
    CHECK(out2 == 0 && now_ms() - t0 < 150, "without hipStreamWaitEvent, another stream does not wait (read %d)", out2);
    hipStreamSynchronize(s2);
    double dt = now_ms() - t0;
    CHECK(out == 1 && dt >= 150, "hipStreamWaitEvent: s2 ran after s1's point (read %d, %.0f ms)", out, dt);
    hipStreamSynchronize(s1);
    hipFree(flag);
    hipFree(flag2);
    hipEventDestroy(ev);
    hipStreamDestroy(s1);
    hipStreamDestroy(s2);
    hipStreamDestroy(s3);
}

struct cb_state {
    hipStream_t stream;
    const unsigned char *dev;
    pthread_t thread;
    int ran, status, seen, order;
};
static int order_counter;

static void stream_cb(hipStream_t stream, hipError_t status, void *data) {
    struct cb_state *st = data;
    st->thread = pthread_self();
    st->status = status;
    st->seen = *st->dev;
    st->ran = stream == st->stream;
    st->order = ++order_counter;
}

static void host_fn(void *data) {
    struct cb_state *st = data;
    st->thread = pthread_self();
    st->seen = *st->dev;
    st->ran = 1;
    st->order = ++order_counter;
}

static void t_callbacks(void) {
    hipStream_t s;
    hipStreamCreate(&s);
    unsigned char *dev;
    hipMalloc((void **)&dev, 4);
    hipMemset(dev, 0, 4);
    struct cb_state a = {.stream = s, .dev = dev}, b = {.dev = dev};
    kernel_us(100000);
    launch(s);
    hipMemsetAsync(dev, 7, 4, s);
    hipError_t e1 = hipStreamAddCallback(s, stream_cb, &a, 0);
    hipError_t e2 = hipLaunchHostFunc(s, host_fn, &b);
    CHECK(e1 == hipSuccess && e2 == hipSuccess && a.order == 0 && b.order == 0,
          "hipStreamAddCallback/hipLaunchHostFunc return before the stream reaches them");
    hipStreamSynchronize(s);
    CHECK(a.ran && a.status == hipSuccess && a.seen == 7 && !pthread_equal(a.thread, pthread_self()),
          "the stream callback ran on the worker after the earlier work (saw %d)", a.seen);
    CHECK(b.ran && b.seen == 7 && b.order == a.order + 1 && pthread_equal(a.thread, b.thread),
          "the host function ran next, on the same worker");
    CHECK(hipStreamAddCallback(s, stream_cb, &a, 1) == hipErrorInvalidValue,
          "hipStreamAddCallback flags != 0: hipErrorInvalidValue");
    hipFree(dev);
    hipStreamDestroy(s);
}

static void t_null_stream(void) {
    hipStream_t b, nb;
    hipStreamCreate(&b);
    hipStreamCreateWithFlags(&nb, hipStreamNonBlocking);
    int *flag;
    hipMalloc((void **)&flag, sizeof *flag);
    hipMemset(flag, 0, sizeof *flag);
    static const int one = 1;
    int out = -1, dummy = 0;

    kernel_us(200000);
    double t0 = now_ms();
    launch(b);
    hipMemcpyAsync(flag, &one, sizeof one, hipMemcpyHostToDevice, b);
    hipMemcpy(&out, flag, sizeof out, hipMemcpyDeviceToHost);
    double dt = now_ms() - t0;
    CHECK(out == 1 && dt >= 150, "hipMemcpy (null stream) waits for a blocking stream's work (%.0f ms)", dt);

    kernel_us(300000);
    t0 = now_ms();
    launch(nb);
    hipMemcpy(&dummy, flag, sizeof dummy, hipMemcpyDeviceToHost);
    dt = now_ms() - t0;
    CHECK(dt < 100 && hipStreamQuery(nb) == hipErrorNotReady,
          "hipMemcpy does not wait for a non-blocking stream (%.0f ms)", dt);
    hipStreamSynchronize(nb);

    kernel_us(200000);
    t0 = now_ms();
    launch(NULL);
    hipMemsetAsync(flag, 0, sizeof *flag, nb);
    hipStreamSynchronize(nb);
    double dnb = now_ms() - t0;
    hipMemsetAsync(flag, 0, sizeof *flag, b);
    int q = hipStreamQuery(b);
    hipStreamSynchronize(b);
    dt = now_ms() - t0;
    CHECK(q == hipErrorNotReady && dt >= 150,
          "a blocking stream's work waits for earlier null-stream work (%.0f ms)", dt);
    CHECK(dnb < 100, "a non-blocking stream's does not (%.0f ms)", dnb);

    kernel_us(200000);
    t0 = now_ms();
    launch(nb);
    hipDeviceSynchronize();
    dt = now_ms() - t0;
    CHECK(dt >= 150 && hipStreamQuery(nb) == hipSuccess, "hipDeviceSynchronize waits for every stream (%.0f ms)", dt);

    kernel_us(200000);
    t0 = now_ms();
    launch(b);
    hipStreamSynchronize(NULL);
    dt = now_ms() - t0;
    CHECK(dt >= 150, "hipStreamSynchronize(0) waits for the blocking streams (%.0f ms)", dt);

    void *p;
    hipMalloc(&p, 64);
    kernel_us(200000);
    t0 = now_ms();
    launch(nb);
    hipFree(p);
    dt = now_ms() - t0;
    CHECK(dt >= 150, "hipFree synchronizes the device first (%.0f ms)", dt);

    /* The _spt calls: stream 0 is the thread's per-thread stream. */
    kernel_us(200000);
    t0 = now_ms();
    hipLaunchKernel_spt((const void *)kern, (dim3){1, 1, 1}, (dim3){1, 1, 1}, NULL, 0, NULL);
    q = hipStreamQuery(hipStreamPerThread);
    hipStreamSynchronize_spt(NULL);
    dt = now_ms() - t0;
    CHECK(q == hipErrorNotReady && dt >= 150, "hipLaunchKernel_spt/hipStreamSynchronize_spt on the per-thread stream (%.0f ms)", dt);

    hipFree(flag);
    hipStreamDestroy(b);
    hipStreamDestroy(nb);
}

static void t_bounded(void) {
    hipStream_t s;
    hipStreamCreateWithFlags(&s, hipStreamNonBlocking);
    setenv("STANDIN_HIP_QUEUE_DEPTH", "4", 1);
    kernel_us(100000);
    double t0 = now_ms(), at[8];
    for (int i = 0; i < 8; i++) {
        launch(s);
        at[i] = now_ms() - t0;
    }
    unsetenv("STANDIN_HIP_QUEUE_DEPTH");
    CHECK(at[3] < 50, "depth 4: the first 4 launches return at once (%.0f ms)", at[3]);
    CHECK(at[4] >= 70 && at[7] >= 350, "then each waits for room: 5th at %.0f ms, 8th at %.0f ms", at[4], at[7]);
    hipStreamSynchronize(s);
    hipStreamDestroy(s);
}

static void t_handles(void) {
    hipStream_t s;
    hipEvent_t ev;
    hipStreamCreate(&s);
    hipEventCreate(&ev);
    CHECK(hipStreamQuery((hipStream_t)0x5eed) == hipErrorInvalidHandle &&
              launch((hipStream_t)0x5eed) == hipErrorInvalidHandle &&
              hipEventQuery((hipEvent_t)0x5eed) == hipErrorInvalidHandle &&
              hipEventRecord(ev, (hipStream_t)0x5eed) == hipErrorInvalidHandle,
          "bad handles: hipErrorInvalidHandle");
    struct cb_state st = {0};
    unsigned char byte = 9;
    st.dev = &byte;
    kernel_us(200000);
    launch(s);
    hipLaunchHostFunc(s, host_fn, &st);
    double t0 = now_ms();
    hipError_t e = hipStreamDestroy(s);
    double dt = now_ms() - t0;
    CHECK(e == hipSuccess && dt < 50 && hipStreamSynchronize(s) == hipErrorInvalidHandle,
          "hipStreamDestroy returns at once; the handle is gone (%.0f ms)", dt);
    hipDeviceSynchronize();
    CHECK(st.ran, "a destroyed stream's queued work still runs");
    hipEventDestroy(ev);
}

/* ---------------------------------------------------------------- RCCL scenarios */

static int me;
static const char *scenario;

static void fill(float *buf, size_t n, int rank) {
    for (size_t j = 0; j < n; j++) buf[j] = (float)(rank + 1) + (float)(j % 5);
}

static int sum_ok(const float *buf, size_t n) {
    for (size_t j = 0; j < n; j++)
        if (buf[j] != 3.0f + 2.0f * (float)(j % 5)) return 0;
    return 1;
}

static ncclResult_t async_error(ncclComm_t c) {
    ncclResult_t a = ncclInternalError;
    ncclCommGetAsyncError(c, &a);
    return a;
}

static void r_coll(ncclComm_t c, hipStream_t s, float *send, float *recv, size_t n) {
    hipEvent_t ev;
    hipEventCreate(&ev);
    fill(send, n, me);
    memset(recv, 0, n * sizeof *recv);
    if (me == 1) sleep_ms(300);
    double t0 = now_ms();
    ncclResult_t r = ncclAllReduce(send, recv, n, ncclFloat, ncclSum, c, s);
    double dt = now_ms() - t0;
    if (me == 0) {
        CHECK(r == ncclSuccess && dt < 50, "ncclAllReduce returns at once while the peer is late (%.1f ms)", dt);
        hipEventRecord(ev, s);
        CHECK(hipStreamQuery(s) == hipErrorNotReady && hipEventQuery(ev) == hipErrorNotReady,
              "its stream and a later event are not ready while it waits on the device");
    }
    hipStreamSynchronize(s);
    dt = now_ms() - t0;
    CHECK(sum_ok(recv, n) && (me == 1 || dt >= 250), "hipStreamSynchronize returns once it completed on the device, data right (%.0f ms)", dt);

    /* A group: one item at ncclGroupEnd. */
    float *gather = calloc(2 * n, sizeof *gather);
    memset(recv, 0, n * sizeof *recv);
    if (me == 1) sleep_ms(300);
    t0 = now_ms();
    ncclGroupStart();
    ncclAllReduce(send, recv, n, ncclFloat, ncclSum, c, s);
    ncclAllGather(send, gather, n, ncclFloat, c, s);
    r = ncclGroupEnd();
    dt = now_ms() - t0;
    if (me == 0) CHECK(r == ncclSuccess && dt < 50, "ncclGroupEnd returns at once (%.1f ms)", dt);
    hipStreamSynchronize(s);
    int ok = sum_ok(recv, n);
    for (size_t j = 0; j < 2 * n; j++)
        if (gather[j] != (float)(j / n + 1) + (float)(j % n % 5)) ok = 0;
    CHECK(ok, "the group's AllReduce and AllGather completed on the device");

    /* A group over two streams: later work of both waits for it. */
    hipStream_t s2;
    hipStreamCreateWithFlags(&s2, hipStreamNonBlocking);
    memset(recv, 0, n * sizeof *recv);
    memset(gather, 0, 2 * n * sizeof *gather);
    if (me == 1) sleep_ms(300);
    ncclGroupStart();
    ncclAllReduce(send, recv, n, ncclFloat, ncclSum, c, s);
    ncclAllGather(send, gather, n, ncclFloat, c, s2);
    ncclGroupEnd();
    if (me == 0)
        CHECK(hipStreamQuery(s) == hipErrorNotReady && hipStreamQuery(s2) == hipErrorNotReady,
              "a group over two streams holds both");
    hipStreamSynchronize(s2);
    ok = sum_ok(recv, n);
    for (size_t j = 0; j < 2 * n; j++)
        if (gather[j] != (float)(j / n + 1) + (float)(j % n % 5)) ok = 0;
    CHECK(ok, "its work is done once either stream is synchronized");
    hipStreamDestroy(s2);
    free(gather);

    /* Send/Recv. */
    memset(recv, 0, n * sizeof *recv);
    if (me == 1) sleep_ms(200);
    t0 = now_ms();
    r = me == 0 ? ncclSend(send, n, ncclFloat, 1, c, s) : ncclRecv(recv, n, ncclFloat, 0, c, s);
    dt = now_ms() - t0;
    hipStreamSynchronize(s);
    if (me == 0) CHECK(r == ncclSuccess && dt < 50, "ncclSend returns at once (%.1f ms)", dt);
    else {
        ok = 1;
        for (size_t j = 0; j < n; j++)
            if (recv[j] != 1.0f + (float)(j % 5)) ok = 0;
        CHECK(r == ncclSuccess && ok, "ncclRecv's data arrived by its stream's sync");
    }

    /* ncclCommDestroy waits for the communicator's queued work. */
    if (me == 1) sleep_ms(300);
    t0 = now_ms();
    ncclAllReduce(send, recv, n, ncclFloat, ncclSum, c, s);
    ncclCommDestroy(c);
    dt = now_ms() - t0;
    if (me == 0) CHECK(dt >= 250 && hipStreamQuery(s) == hipSuccess, "ncclCommDestroy waits for the queued collective (%.0f ms)", dt);
    hipEventDestroy(ev);
}

static void r_mismatch(ncclComm_t c, hipStream_t s, float *send, float *recv, size_t n) {
    struct cb_state st = {0};
    unsigned char byte = 5;
    st.dev = &byte;
    double t0 = now_ms();
    ncclResult_t r = ncclAllReduce(send, recv, me == 0 ? n : 2 * n, ncclFloat, ncclSum, c, s);
    double dt = now_ms() - t0;
    hipLaunchHostFunc(s, host_fn, &st);
    CHECK(r == ncclSuccess && dt < 50, "a mismatched ncclAllReduce returns at once (%.1f ms)", dt);
    sleep_ms(500);
    CHECK(hipStreamQuery(s) == hipErrorNotReady && !st.ran,
          "it hangs on the device (stream not ready after 500 ms, later work not run)");
    t0 = now_ms();
    r = ncclCommAbort(c);
    dt = now_ms() - t0;
    CHECK(r == ncclSuccess && dt < 100, "ncclCommAbort returns at once (%.1f ms)", dt);
    hipStreamSynchronize(s);
    dt = now_ms() - t0;
    CHECK(dt < 1000 && st.ran, "the abort ends the waiting work: the stream drains (%.0f ms), later work ran", dt);
    r = async_error(c);
    CHECK(r != ncclSuccess, "the aborted communicator keeps an error (%s)", ncclGetErrorString(r));
    t0 = now_ms();
    r = ncclAllReduce(send, recv, n, ncclFloat, ncclSum, c, s);
    dt = now_ms() - t0;
    CHECK(r != ncclSuccess && dt < 50, "a collective on it afterwards fails at the call (%d)", r);
}

static void r_timeout(ncclComm_t c, hipStream_t s, float *send, float *recv, size_t n) {
    struct cb_state st = {0};
    unsigned char byte = 5;
    st.dev = &byte;
    double t0 = now_ms();
    ncclResult_t r = ncclAllReduce(send, recv, n, me == 0 ? ncclFloat : ncclDouble, ncclSum, c, s);
    hipLaunchHostFunc(s, host_fn, &st);
    CHECK(r == ncclSuccess && now_ms() - t0 < 50, "a mismatched collective returns at once");
    hipStreamSynchronize(s);
    double dt = now_ms() - t0;
    CHECK(dt >= 400 && dt < 3000 && st.ran,
          "$STANDIN_RCCL_TIMEOUT_MS=500 ends the wait on the device; the stream's later work ran (%.0f ms)", dt);
    r = async_error(c);
    CHECK(r == ncclSystemError, "ncclCommGetAsyncError: %d (want ncclSystemError)", r);
    r = ncclAllReduce(send, recv, n, ncclFloat, ncclSum, c, s);
    CHECK(r == ncclSystemError, "a later collective fails at the call with it (%d)", r);
    ncclCommAbort(c);
}

static void r_sync(ncclComm_t c, hipStream_t s, float *send, float *recv, size_t n) {
    fill(send, n, me);
    memset(recv, 0, n * sizeof *recv);
    if (me == 1) sleep_ms(300);
    double t0 = now_ms();
    ncclResult_t r = ncclAllReduce(send, recv, n, ncclFloat, ncclSum, c, s);
    double dt = now_ms() - t0;
    CHECK(r == ncclSuccess && sum_ok(recv, n) && (me == 1 || dt >= 250),
          "STANDIN_SYNC=1: ncclAllReduce blocks at the call until done (%.0f ms)", dt);
    kernel_us(0);
    launch(s);
    CHECK(hipStreamQuery(s) == hipSuccess, "STANDIN_SYNC=1: streams are always idle");
    t0 = now_ms();
    r = ncclAllReduce(send, recv, me == 0 ? n : 2 * n, ncclFloat, ncclSum, c, s);
    dt = now_ms() - t0;
    CHECK(r == ncclSystemError && dt >= 400, "STANDIN_SYNC=1: a mismatch times out at the call (%d, %.0f ms)", r, dt);
    ncclCommAbort(c);
}

static int rank_main(ncclUniqueId id) {
    snprintf(who, sizeof who, "%s rank %d: ", scenario, me);
    hipSetDevice(me);
    hipStream_t s;
    hipStreamCreate(&s);
    ncclComm_t c;
    ncclResult_t r = ncclCommInitRank(&c, 2, id, me);
    CHECK(r == ncclSuccess, "ncclCommInitRank (synchronous): %d", r);
    if (r != ncclSuccess) return 1;
    size_t n = 1024;
    float *send, *recv;
    hipMalloc((void **)&send, 2 * n * sizeof(double));
    hipMalloc((void **)&recv, 2 * n * sizeof(double));
    fill(send, n, me);
    if (!strcmp(scenario, "coll")) r_coll(c, s, send, recv, n);
    else if (!strcmp(scenario, "mismatch")) r_mismatch(c, s, send, recv, n);
    else if (!strcmp(scenario, "timeout")) r_timeout(c, s, send, recv, n);
    else if (!strcmp(scenario, "sync")) r_sync(c, s, send, recv, n);
    hipFree(send);
    hipFree(recv);
    hipStreamDestroy(s);
    return failed ? 1 : 0;
}

/* A scenario's process: forks 2 ranks (no HIP call before). */
static int scenario_main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    ncclUniqueId id;
    ncclGetUniqueId(&id);
    pid_t kids[2];
    for (me = 0; me < 2; me++) {
        kids[me] = fork();
        if (kids[me] == 0) {
            int code = rank_main(id);
            fflush(stdout);
            _exit(code);
        }
    }
    int bad = 0;
    for (int q = 0; q < 2; q++) {
        int st;
        waitpid(kids[q], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad = 1;
    }
    return bad;
}

/* Runs `selftest NAME` with extra environment (NAME=VALUE pairs, NULL-terminated). */
static int run_scenario(const char *name, ...) {
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        va_list ap;
        va_start(ap, name);
        const char *kv;
        while ((kv = va_arg(ap, const char *))) putenv((char *)kv);
        va_end(ap);
        execl("/proc/self/exe", "selftest", name, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    CHECK(ok, "scenario %s (2 ranks)", name);
    return ok;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) {
        scenario = argv[1];
        return scenario_main();
    }
    unsetenv("STANDIN_SYNC");
    unsetenv("STANDIN_HIP_QUEUE_DEPTH");
    double t0 = now_ms();
    t_query_and_sync();
    t_event_point();
    t_wait_event();
    t_callbacks();
    t_null_stream();
    t_bounded();
    t_handles();
    run_scenario("coll", "STANDIN_RCCL_TIMEOUT_MS=10000", (char *)NULL);
    run_scenario("mismatch", "STANDIN_RCCL_TIMEOUT_MS=0", "STANDIN_RCCL_QUIET=1", (char *)NULL);
    run_scenario("timeout", "STANDIN_RCCL_TIMEOUT_MS=500", "STANDIN_RCCL_QUIET=1", (char *)NULL);
    run_scenario("sync", "STANDIN_SYNC=1", "STANDIN_RCCL_TIMEOUT_MS=500", "STANDIN_RCCL_QUIET=1",
                 (char *)NULL);
    printf("selftest: %d checks, %d failed (%.1f s)\n", checks, failed, (now_ms() - t0) / 1e3);
    return failed ? 1 : 0;
}
