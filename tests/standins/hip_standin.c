/* Stand-in for the ROCm HIP runtime (libamdhip64.so.5) for tests on machines without a GPU.
 *
 * Same names, signatures, enum values and symbol version (hip_4.2, see hip_standin.map) as the
 * real library, so a program and a tracer work unchanged on either. "Devices" are simulated:
 * hipGetDeviceCount reports 8 (or $STANDIN_HIP_DEVICES), the current device is per thread
 * (default 0), device memory is host memory from malloc. Streams and events are real heap
 * objects (magic numbers), so handles are distinct opaque pointers and bad handles are rejected
 * with hipErrorInvalidHandle instead of crashing.
 *
 * Work is asynchronous, as on a GPU:
 *   - Each stream is a FIFO queue drained by its own worker thread (the "device"), started at
 *     its first work item; so are each device's null stream (stream 0) and each thread's
 *     per-thread stream (hipStreamPerThread, stream 0 of the _spt calls). Worker threads are
 *     named hipq-null-D, hipq-strm-D, hipq-pt-D and block all signals.
 *   - The null stream is the LEGACY default stream: its work waits for all earlier work of the
 *     device's blocking streams (created without hipStreamNonBlocking; per-thread streams are
 *     blocking), and work queued on a blocking stream waits for earlier null-stream work.
 *   - Enqueue and return at once: hipLaunchKernel(_spt) (the "kernel" sleeps
 *     $STANDIN_HIP_KERNEL_US microseconds on the worker, default 0), hipMemcpyAsync(_spt),
 *     hipMemsetAsync, hipMemcpyPeerAsync, hipEventRecord (the event marks the point: it
 *     completes when the worker reaches it), hipStreamWaitEvent(_spt) (later work of the
 *     stream waits for the event's point, on any stream), hipStreamAddCallback and
 *     hipLaunchHostFunc (the callback runs on the worker when the stream reaches it).
 *     Arguments are checked at the call (errors are returned there); the data moves on the
 *     worker. An enqueue blocks while $STANDIN_HIP_QUEUE_DEPTH (default 1024) items are
 *     pending on that stream.
 *   - Waits: hipStreamSynchronize(_spt) (the stream drained; stream 0: also the blocking
 *     streams' earlier work), hipEventSynchronize (its point reached), hipDeviceSynchronize
 *     (every stream of the current device), hipMemcpy(_spt)/hipMemset (queued on the null or
 *     per-thread stream, then waited for), hipFree (synchronizes the allocation's device first)
 *     and hipHostFree (the current device), as on real HIP.
 *   - Queries: hipStreamQuery(_spt)/hipEventQuery return hipErrorNotReady (600) while work is
 *     pending, hipSuccess when done; an event never recorded is complete.
 *   - hipStreamDestroy returns at once; the stream's queued work still runs.
 *   - standin_hip_enqueue (standin_private.h, not HIP API) queues a function: the RCCL
 *     stand-in's collectives run in the stream's work through it.
 * $STANDIN_SYNC=1 (read once) restores the old synchronous model: all work is done at the call,
 * waits return at once and queries answer hipSuccess.
 * Forking a process whose streams have work is unsupported (as on real HIP).
 * Error strings are the ones of ROCm 5.2 (Debian 12): hipGetErrorString returns the enum name.
 * Build: tests/standins/build.sh */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "standin_api.h"
#include "standin_private.h"

#define API __attribute__((visibility("default"), noinline))

#define STREAM_MAGIC 0x5354524d /* "STRM" */
#define EVENT_MAGIC 0x45564e54  /* "EVNT" */
#define MAX_DEVICES 1024

enum qkind { Q_NULL, Q_STREAM, Q_PERTHREAD };

struct work;

/* The device side of a stream: a FIFO of work items and the worker that drains it. Items are
 * numbered 1, 2, ... (tickets) in queue order; `done` is the last one completed. Queues are
 * never freed (events and other queues' items may name them). */
struct queue {
    int kind, device, blocking;
    int dead;    /* its stream was destroyed: the worker ends once it is drained */
    int started; /* a worker is running */
    hipStream_t handle; /* what callbacks get: the stream, NULL or hipStreamPerThread */
    uint64_t enq, done;
    struct work *head, *tail;
    struct queue *next;    /* every queue */
    struct queue *pt_next; /* the owning thread's per-thread queues */
};

/* 32 bytes, the size rccl_ranks.c's padding assumes. */
struct ihipStream_t {
    uint32_t magic;
    int device;
    unsigned flags;
    int priority;
    struct queue *q;
    struct ihipStream_t *next;
};
_Static_assert(sizeof(struct ihipStream_t) == 32, "rccl_ranks.c pads with malloc(32)");

struct ihipEvent_t {
    uint32_t magic;
    int device;
    unsigned flags;
    int recorded;
    struct queue *q; /* the point it marks: item `ticket` of q */
    uint64_t ticket;
    struct timespec when; /* when the worker reached it */
    struct ihipEvent_t *next;
};

enum wkind { W_MARK, W_KERNEL, W_COPY, W_SET, W_RECORD, W_CALLBACK, W_HOSTFN, W_FN };

struct dep {
    struct queue *q;
    uint64_t t; /* waits until q->done >= t */
};

struct work {
    int kind;
    uint64_t ticket;
    struct work *next;
    union {
        long us;
        struct { void *dst; const void *src; size_t n; } copy;
        struct { void *dst; int value; size_t n; } set;
        struct ihipEvent_t *event;
        struct { hipStreamCallback_t fn; hipStream_t stream; void *data; } cb;
        struct { hipHostFn_t fn; void *data; } host;
        struct { void (*fn)(void *); void *arg; } fn;
    } u;
    int ndeps;
    struct dep *deps;
};

struct alloc {
    char *ptr;
    size_t size;
    int device; /* -1: pinned host memory (hipHostMalloc) */
    struct alloc *next;
};

/* One lock for everything; `cond` is broadcast whenever an item completes or is queued. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct ihipStream_t *streams;
static struct ihipEvent_t *events;
static struct alloc *allocs;
static struct queue *queues;
static int nqueues;
static struct queue *nullq[MAX_DEVICES];

static __thread int current_device;
static __thread hipError_t last_error = hipSuccess;
static __thread struct queue *my_ptq; /* this thread's per-thread queues */

/* Records err as the thread's last error (like HIP's HIP_RETURN) and returns it. */
static hipError_t ret(hipError_t err) {
    if (err != hipSuccess) last_error = err;
    return err;
}

static long env_long(const char *name, long dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    return *end ? dflt : v;
}

static int sync_flag;
static pthread_once_t sync_once = PTHREAD_ONCE_INIT;
static void read_sync(void) { sync_flag = env_long("STANDIN_SYNC", 0) != 0; }
/* $STANDIN_SYNC=1: all work at the call, as the stand-in did before streams had workers. */
static int sync_mode(void) {
    pthread_once(&sync_once, read_sync);
    return sync_flag;
}

static int device_count(void) {
    long n = env_long("STANDIN_HIP_DEVICES", 8);
    return n >= 0 && n <= MAX_DEVICES ? (int)n : 8;
}

static int valid_device(int d) { return d >= 0 && d < device_count(); }

/* ---------------------------------------------------------------- queues (lock held: _l) */

static struct queue *queue_new_l(int kind, int device, int blocking, hipStream_t handle) {
    struct queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->kind = kind;
    q->device = device;
    q->blocking = blocking;
    q->handle = handle;
    q->next = queues;
    queues = q;
    nqueues++;
    return q;
}

static struct queue *null_queue_l(int dev) {
    if (!nullq[dev]) nullq[dev] = queue_new_l(Q_NULL, dev, 1, NULL);
    return nullq[dev];
}

static struct queue *pt_queue_l(int dev) {
    for (struct queue *q = my_ptq; q; q = q->pt_next)
        if (q->device == dev) return q;
    struct queue *q = queue_new_l(Q_PERTHREAD, dev, 1, hipStreamPerThread);
    if (q) {
        q->pt_next = my_ptq;
        my_ptq = q;
    }
    return q;
}

static struct ihipStream_t *find_stream_l(hipStream_t s) {
    for (struct ihipStream_t *p = streams; p; p = p->next)
        if (p == s) return p;
    return NULL;
}

static struct ihipEvent_t *find_event_l(hipEvent_t e) {
    for (struct ihipEvent_t *p = events; p; p = p->next)
        if (p == e) return p;
    return NULL;
}

/* The queue of a stream argument: NULL is the null stream (per-thread stream for _spt calls),
 * hipStreamPerThread the thread's per-thread stream; anything else must be a live stream. */
static hipError_t resolve_l(hipStream_t s, int spt, struct queue **out) {
    struct queue *q;
    if (s == NULL) q = spt ? pt_queue_l(current_device) : null_queue_l(current_device);
    else if (s == hipStreamPerThread) q = pt_queue_l(current_device);
    else {
        struct ihipStream_t *p = find_stream_l(s);
        if (!p) return hipErrorInvalidHandle;
        q = p->q;
    }
    if (!q) return hipErrorOutOfMemory;
    *out = q;
    return hipSuccess;
}

static int pending_l(const struct queue *q) { return q->done < q->enq; }

/* The null stream's ordering against the device's blocking streams (legacy default stream). */
static void add_legacy_deps_l(struct work *w, struct queue *q) {
    if (q->kind == Q_NULL) {
        for (struct queue *o = queues; o; o = o->next)
            if (o != q && o->device == q->device && o->blocking && pending_l(o))
                w->deps[w->ndeps++] = (struct dep){o, o->enq};
    } else if (q->blocking) {
        struct queue *n = nullq[q->device];
        if (n && pending_l(n)) w->deps[w->ndeps++] = (struct dep){n, n->enq};
    }
}

static int deps_met_l(const struct work *w) {
    for (int i = 0; i < w->ndeps; i++)
        if (w->deps[i].q->done < w->deps[i].t) return 0;
    return 1;
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Does an item's work (on the worker; at the call in sync mode). Called without the lock. */
static void run_work(struct queue *q, struct work *w) {
    switch (w->kind) {
    case W_MARK: break;
    case W_KERNEL:
        if (w->u.us > 0) sleep_us(w->u.us);
        break;
    case W_COPY:
        if (w->u.copy.n) memmove(w->u.copy.dst, w->u.copy.src, w->u.copy.n);
        break;
    case W_SET:
        if (w->u.set.n) memset(w->u.set.dst, w->u.set.value, w->u.set.n);
        break;
    case W_RECORD: {
        pthread_mutex_lock(&lock);
        struct ihipEvent_t *e = find_event_l(w->u.event);
        /* Unless destroyed or recorded again since. */
        if (e && e->q == q && e->ticket == w->ticket) clock_gettime(CLOCK_MONOTONIC, &e->when);
        pthread_mutex_unlock(&lock);
        break;
    }
    case W_CALLBACK: w->u.cb.fn(w->u.cb.stream, hipSuccess, w->u.cb.data); break;
    case W_HOSTFN: w->u.host.fn(w->u.host.data); break;
    case W_FN: w->u.fn.fn(w->u.fn.arg); break;
    }
}

static void free_work(struct work *w) {
    free(w->deps);
    free(w);
}

static void *worker(void *arg) {
    struct queue *q = arg;
    char name[16];
    snprintf(name, sizeof name, "hipq-%s-%d",
             q->kind == Q_NULL ? "null" : q->kind == Q_STREAM ? "strm" : "pt", q->device);
    pthread_setname_np(pthread_self(), name);
    current_device = q->device;
    pthread_mutex_lock(&lock);
    for (;;) {
        struct work *w = q->head;
        if (!w) {
            if (q->dead) break;
            pthread_cond_wait(&cond, &lock);
            continue;
        }
        if (!deps_met_l(w)) {
            pthread_cond_wait(&cond, &lock);
            continue;
        }
        pthread_mutex_unlock(&lock);
        run_work(q, w);
        pthread_mutex_lock(&lock);
        q->head = w->next;
        if (!q->head) q->tail = NULL;
        q->done = w->ticket;
        pthread_cond_broadcast(&cond);
        free_work(w);
    }
    q->started = 0;
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* Starts q's worker if it has work and none runs (also after a fork, which keeps no thread). */
static int ensure_worker_l(struct queue *q) {
    if (q->started || !q->head) return 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &a, worker, q);
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return -1;
    q->started = 1;
    return 0;
}

static struct work *work_new(int kind) {
    struct work *w = calloc(1, sizeof *w);
    if (w) w->kind = kind;
    return w;
}

/* Queues w on q (lock held; may wait for room, dropping the lock) and returns its ticket, 0 on
 * failure (w is freed then). `extra`, if set, is one more dependency. In sync mode the work is
 * done now, on this thread. */
static uint64_t submit_l(struct queue *q, struct work *w, const struct dep *extra) {
    if (sync_mode()) {
        uint64_t t = ++q->enq;
        w->ticket = t;
        pthread_mutex_unlock(&lock);
        run_work(q, w);
        pthread_mutex_lock(&lock);
        if (q->done < t) q->done = t;
        pthread_cond_broadcast(&cond);
        free_work(w);
        return t;
    }
    long depth = env_long("STANDIN_HIP_QUEUE_DEPTH", 1024);
    if (depth < 1) depth = 1;
    while (q->enq - q->done >= (uint64_t)depth) {
        ensure_worker_l(q);
        pthread_cond_wait(&cond, &lock);
    }
    w->deps = calloc((size_t)nqueues + 1, sizeof *w->deps);
    if (!w->deps) {
        free(w);
        return 0;
    }
    add_legacy_deps_l(w, q);
    if (extra && extra->q->done < extra->t) w->deps[w->ndeps++] = *extra;
    w->ticket = ++q->enq;
    if (q->tail) q->tail->next = w;
    else q->head = w;
    q->tail = w;
    if (ensure_worker_l(q) != 0) {
        fprintf(stderr, "standin-hip: cannot start a stream worker thread\n");
        abort();
    }
    pthread_cond_broadcast(&cond);
    return w->ticket;
}

/* Resolves `stream` and queues w there: the common path of the enqueueing calls. */
static hipError_t enqueue(hipStream_t stream, int spt, struct work *w, const struct dep *extra,
                          struct queue **qout, uint64_t *tout) {
    if (!w) return hipErrorOutOfMemory;
    struct queue *q;
    pthread_mutex_lock(&lock);
    hipError_t e = resolve_l(stream, spt, &q);
    uint64_t t = 0;
    if (e == hipSuccess) {
        t = submit_l(q, w, extra);
        if (t == 0) e = hipErrorOutOfMemory;
    } else {
        free(w);
    }
    pthread_mutex_unlock(&lock);
    if (qout) *qout = q;
    if (tout) *tout = t;
    return e;
}

static void wait_l(struct queue *q, uint64_t t) {
    while (q->done < t) {
        ensure_worker_l(q);
        pthread_cond_wait(&cond, &lock);
    }
}

/* Waits for the work queued so far on the device's queues: all of them, or (legacy null
 * stream) the null stream and the blocking streams. */
static void wait_device_l(int dev, int only_blocking) {
    int n = 0;
    struct dep *d = calloc((size_t)nqueues + 1, sizeof *d);
    if (!d) return;
    for (struct queue *q = queues; q; q = q->next)
        if (q->device == dev && (!only_blocking || q->blocking) && pending_l(q))
            d[n++] = (struct dep){q, q->enq};
    for (int i = 0; i < n; i++) wait_l(d[i].q, d[i].t);
    free(d);
}

static int device_idle_l(int dev, int only_blocking) {
    for (struct queue *q = queues; q; q = q->next)
        if (q->device == dev && (!only_blocking || q->blocking) && pending_l(q)) return 0;
    return 1;
}

static void atfork_prepare(void) { pthread_mutex_lock(&lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&lock); }
static void atfork_child(void) {
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&cond, NULL);
    for (struct queue *q = queues; q; q = q->next) q->started = 0;
}

__attribute__((constructor)) static void init(void) {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---------------------------------------------------------------- memory checks */

/* 1 if [p, p+n) lies inside one hipMalloc/hipHostMalloc allocation. */
static int tracked(const void *p, size_t n) {
    int ok = 0;
    pthread_mutex_lock(&lock);
    for (struct alloc *a = allocs; a; a = a->next)
        if ((const char *)p >= a->ptr && (const char *)p - a->ptr <= (ptrdiff_t)a->size &&
            n <= a->size - (size_t)((const char *)p - a->ptr)) { ok = 1; break; }
    pthread_mutex_unlock(&lock);
    return ok;
}

/* 1 if every page of [p, p+n) is mapped (mincore fails with ENOMEM on unmapped pages), so that a
 * bogus pointer yields hipErrorInvalidValue instead of a crash. */
static int mapped(const void *p, size_t n) {
    if (n == 0) return 1;
    if (p == NULL) return 0;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)p & ~(uintptr_t)(page - 1);
    uintptr_t end = (uintptr_t)p + n;
    if (end < (uintptr_t)p) return 0;
    unsigned char vec[64];
    for (uintptr_t a = start; a < end;) {
        size_t pages = (end - a + page - 1) / page;
        if (pages > sizeof vec) pages = sizeof vec;
        if (mincore((void *)a, pages * page, vec) != 0 && errno == ENOMEM) return 0;
        a += pages * page;
    }
    return 1;
}

/* A pointer that must be "device" memory (or pinned host memory, which devices can access). */
static int device_ptr_ok(const void *p, size_t n) { return n == 0 || tracked(p, n); }
/* A pointer that may be device or host memory. */
static int any_ptr_ok(const void *p, size_t n) { return n == 0 || tracked(p, n) || mapped(p, n); }

/* Checks a copy's arguments (at the call, as HIP does); the copy itself is queued. */
static hipError_t copy_check(void *dst, const void *src, size_t n, hipMemcpyKind kind) {
    int ok;
    switch (kind) {
    case hipMemcpyHostToHost: ok = any_ptr_ok(dst, n) && any_ptr_ok(src, n); break;
    case hipMemcpyHostToDevice: ok = device_ptr_ok(dst, n) && any_ptr_ok(src, n); break;
    case hipMemcpyDeviceToHost: ok = any_ptr_ok(dst, n) && device_ptr_ok(src, n); break;
    case hipMemcpyDeviceToDevice: ok = device_ptr_ok(dst, n) && device_ptr_ok(src, n); break;
    case hipMemcpyDefault: ok = any_ptr_ok(dst, n) && any_ptr_ok(src, n); break;
    default: return hipErrorInvalidMemcpyDirection;
    }
    return ok ? hipSuccess : hipErrorInvalidValue;
}

static struct work *copy_work(void *dst, const void *src, size_t n) {
    struct work *w = work_new(W_COPY);
    if (w) {
        w->u.copy.dst = dst;
        w->u.copy.src = src;
        w->u.copy.n = n;
    }
    return w;
}

static struct work *set_work(void *dst, int value, size_t n) {
    struct work *w = work_new(W_SET);
    if (w) {
        w->u.set.dst = dst;
        w->u.set.value = value;
        w->u.set.n = n;
    }
    return w;
}

/* Queues w on `stream` and waits for it: the synchronous copies and sets. */
static hipError_t enqueue_wait(hipStream_t stream, int spt, struct work *w) {
    struct queue *q;
    uint64_t t;
    hipError_t e = enqueue(stream, spt, w, NULL, &q, &t);
    if (e != hipSuccess) return e;
    pthread_mutex_lock(&lock);
    wait_l(q, t);
    pthread_mutex_unlock(&lock);
    return hipSuccess;
}

static hipError_t alloc_mem(void **ptr, size_t size, int device) {
    if (ptr == NULL) return hipErrorInvalidValue;
    if (size == 0) { *ptr = NULL; return hipSuccess; }
    struct alloc *a = malloc(sizeof *a);
    /* 256-byte aligned like HIP allocations. */
    void *p = NULL;
    if (a == NULL || posix_memalign(&p, 256, size) != 0) {
        free(a);
        *ptr = NULL;
        return hipErrorOutOfMemory;
    }
    a->ptr = p;
    a->size = size;
    a->device = device;
    pthread_mutex_lock(&lock);
    a->next = allocs;
    allocs = a;
    pthread_mutex_unlock(&lock);
    *ptr = p;
    return hipSuccess;
}

/* Frees an allocation of the wanted kind (host: pinned or not), once the device it belongs
 * to (host memory: the current device) has finished its work, as hipFree does; 0 if ptr is
 * not one. */
static int free_mem(void *ptr, int host) {
    struct alloc *found = NULL;
    pthread_mutex_lock(&lock);
    for (struct alloc *a = allocs; a; a = a->next)
        if (a->ptr == ptr && (a->device < 0) == host) { found = a; break; }
    if (found) {
        if (!sync_mode()) wait_device_l(host ? current_device : found->device, 0);
        for (struct alloc **pp = &allocs; *pp; pp = &(*pp)->next)
            if (*pp == found) { *pp = found->next; break; }
    }
    pthread_mutex_unlock(&lock);
    if (!found) return 0;
    free(found->ptr);
    free(found);
    return 1;
}

static hipError_t stream_create(hipStream_t *stream, unsigned flags, int priority) {
    if (stream == NULL) return hipErrorInvalidValue;
    if (flags & ~(unsigned)hipStreamNonBlocking) return hipErrorInvalidValue;
    struct ihipStream_t *s = calloc(1, sizeof *s);
    if (s == NULL) return hipErrorOutOfMemory;
    s->magic = STREAM_MAGIC;
    s->device = current_device;
    s->flags = flags;
    /* HIP clamps priorities to [greatest, least] = [-1, 0]. */
    s->priority = priority < -1 ? -1 : priority > 0 ? 0 : priority;
    pthread_mutex_lock(&lock);
    s->q = queue_new_l(Q_STREAM, s->device, !(flags & hipStreamNonBlocking), s);
    if (s->q) {
        s->next = streams;
        streams = s;
    }
    pthread_mutex_unlock(&lock);
    if (!s->q) {
        free(s);
        return hipErrorOutOfMemory;
    }
    *stream = s;
    return hipSuccess;
}

static hipError_t event_create(hipEvent_t *event, unsigned flags) {
    if (event == NULL) return hipErrorInvalidValue;
    if (flags & ~(unsigned)(hipEventBlockingSync | hipEventDisableTiming | hipEventInterprocess))
        return hipErrorInvalidValue;
    struct ihipEvent_t *e = calloc(1, sizeof *e);
    if (e == NULL) return hipErrorOutOfMemory;
    e->magic = EVENT_MAGIC;
    e->device = current_device;
    e->flags = flags;
    pthread_mutex_lock(&lock);
    e->next = events;
    events = e;
    pthread_mutex_unlock(&lock);
    *event = e;
    return hipSuccess;
}

/* ---------------------------------------------------------------- device management */

API hipError_t hipInit(unsigned int flags) {
    return ret(flags != 0 ? hipErrorInvalidValue : hipSuccess);
}

API hipError_t hipDriverGetVersion(int *driverVersion) {
    if (driverVersion == NULL) return ret(hipErrorInvalidValue);
    *driverVersion = 50221151; /* ROCm 5.2.x's HIP_VERSION */
    return hipSuccess;
}

API hipError_t hipRuntimeGetVersion(int *runtimeVersion) {
    if (runtimeVersion == NULL) return ret(hipErrorInvalidValue);
    *runtimeVersion = 50221151;
    return hipSuccess;
}

API hipError_t hipGetDeviceCount(int *count) {
    if (count == NULL) return ret(hipErrorInvalidValue);
    *count = device_count();
    return ret(*count == 0 ? hipErrorNoDevice : hipSuccess);
}

API hipError_t hipSetDevice(int deviceId) {
    if (!valid_device(deviceId)) return ret(hipErrorInvalidDevice);
    current_device = deviceId;
    return hipSuccess;
}

API hipError_t hipGetDevice(int *deviceId) {
    if (deviceId == NULL) return ret(hipErrorInvalidValue);
    if (device_count() == 0) return ret(hipErrorNoDevice);
    *deviceId = current_device;
    return hipSuccess;
}

API hipError_t hipDeviceSynchronize(void) {
    if (device_count() == 0) return ret(hipErrorNoDevice);
    if (sync_mode()) return hipSuccess;
    pthread_mutex_lock(&lock);
    wait_device_l(current_device, 0);
    pthread_mutex_unlock(&lock);
    return hipSuccess;
}

API hipError_t hipDeviceCanAccessPeer(int *canAccessPeer, int deviceId, int peerDeviceId) {
    if (canAccessPeer == NULL) return ret(hipErrorInvalidValue);
    if (!valid_device(deviceId) || !valid_device(peerDeviceId)) return ret(hipErrorInvalidDevice);
    *canAccessPeer = deviceId != peerDeviceId;
    return hipSuccess;
}

API hipError_t hipDeviceEnablePeerAccess(int peerDeviceId, unsigned int flags) {
    if (flags != 0) return ret(hipErrorInvalidValue);
    if (!valid_device(peerDeviceId) || peerDeviceId == current_device)
        return ret(hipErrorInvalidDevice);
    return hipSuccess;
}

/* ---------------------------------------------------------------- streams */

API hipError_t hipStreamCreate(hipStream_t *stream) { return ret(stream_create(stream, 0, 0)); }

API hipError_t hipStreamCreateWithFlags(hipStream_t *stream, unsigned int flags) {
    return ret(stream_create(stream, flags, 0));
}

API hipError_t hipStreamCreateWithPriority(hipStream_t *stream, unsigned int flags, int priority) {
    return ret(stream_create(stream, flags, priority));
}

API hipError_t hipStreamDestroy(hipStream_t stream) {
    struct ihipStream_t *found = NULL;
    if (stream == NULL) return ret(hipErrorInvalidHandle);
    pthread_mutex_lock(&lock);
    for (struct ihipStream_t **pp = &streams; *pp; pp = &(*pp)->next)
        if (*pp == stream) {
            found = *pp;
            *pp = found->next;
            break;
        }
    if (found) { /* its queued work still runs; then its worker ends */
        found->q->dead = 1;
        pthread_cond_broadcast(&cond);
    }
    pthread_mutex_unlock(&lock);
    if (!found) return ret(hipErrorInvalidHandle);
    found->magic = 0;
    free(found);
    return hipSuccess;
}

static hipError_t stream_sync(hipStream_t stream, int spt) {
    struct queue *q;
    pthread_mutex_lock(&lock);
    hipError_t e = resolve_l(stream, spt, &q);
    if (e == hipSuccess && !sync_mode()) {
        if (q->kind == Q_NULL) wait_device_l(q->device, 1);
        else wait_l(q, q->enq);
    }
    pthread_mutex_unlock(&lock);
    return ret(e);
}

API hipError_t hipStreamSynchronize(hipStream_t stream) { return stream_sync(stream, 0); }

API hipError_t hipStreamSynchronize_spt(hipStream_t stream) { return stream_sync(stream, 1); }

static hipError_t stream_query(hipStream_t stream, int spt) {
    struct queue *q;
    pthread_mutex_lock(&lock);
    hipError_t e = resolve_l(stream, spt, &q);
    int idle = 1;
    if (e == hipSuccess && !sync_mode())
        idle = q->kind == Q_NULL ? device_idle_l(q->device, 1) : !pending_l(q);
    pthread_mutex_unlock(&lock);
    if (e != hipSuccess) return ret(e);
    return idle ? hipSuccess : hipErrorNotReady; /* not ready is no error: not kept as last */
}

API hipError_t hipStreamQuery(hipStream_t stream) { return stream_query(stream, 0); }

API hipError_t hipStreamQuery_spt(hipStream_t stream) { return stream_query(stream, 1); }

static hipError_t stream_wait_event(hipStream_t stream, hipEvent_t event, unsigned flags, int spt) {
    if (flags != 0) return ret(hipErrorInvalidValue);
    struct queue *q;
    pthread_mutex_lock(&lock);
    hipError_t e = resolve_l(stream, spt, &q);
    struct ihipEvent_t *ev = find_event_l(event);
    if (e == hipSuccess && ev == NULL) e = hipErrorInvalidHandle;
    if (e == hipSuccess) {
        /* The point as recorded now; an event never recorded is no wait at all. */
        struct dep d = {ev->q, ev->ticket};
        struct work *w = work_new(W_MARK);
        if (!w) e = hipErrorOutOfMemory;
        else if (submit_l(q, w, ev->recorded ? &d : NULL) == 0) e = hipErrorOutOfMemory;
    }
    pthread_mutex_unlock(&lock);
    return ret(e);
}

API hipError_t hipStreamWaitEvent(hipStream_t stream, hipEvent_t event, unsigned int flags) {
    return stream_wait_event(stream, event, flags, 0);
}

API hipError_t hipStreamWaitEvent_spt(hipStream_t stream, hipEvent_t event, unsigned int flags) {
    return stream_wait_event(stream, event, flags, 1);
}

API hipError_t hipStreamGetFlags(hipStream_t stream, unsigned int *flags) {
    if (flags == NULL) return ret(hipErrorInvalidValue);
    unsigned f = 0;
    pthread_mutex_lock(&lock);
    int ok = stream == NULL || stream == hipStreamPerThread || find_stream_l(stream) != NULL;
    if (ok && stream != NULL && stream != hipStreamPerThread) f = stream->flags;
    pthread_mutex_unlock(&lock);
    if (!ok) return ret(hipErrorInvalidHandle);
    *flags = f;
    return hipSuccess;
}

API hipError_t hipStreamAddCallback(hipStream_t stream, hipStreamCallback_t callback,
                                    void *userData, unsigned int flags) {
    if (callback == NULL || flags != 0) return ret(hipErrorInvalidValue);
    struct work *w = work_new(W_CALLBACK);
    if (w) {
        w->u.cb.fn = callback;
        w->u.cb.stream = stream;
        w->u.cb.data = userData;
    }
    return ret(enqueue(stream, 0, w, NULL, NULL, NULL));
}

API hipError_t hipLaunchHostFunc(hipStream_t stream, hipHostFn_t fn, void *userData) {
    if (fn == NULL) return ret(hipErrorInvalidValue);
    struct work *w = work_new(W_HOSTFN);
    if (w) {
        w->u.host.fn = fn;
        w->u.host.data = userData;
    }
    return ret(enqueue(stream, 0, w, NULL, NULL, NULL));
}

/* The stand-ins' private entry point (standin_private.h). */
API hipError_t standin_hip_enqueue(hipStream_t stream, void (*fn)(void *), void *arg) {
    if (fn == NULL) {
        struct queue *q;
        pthread_mutex_lock(&lock);
        hipError_t e = resolve_l(stream, 0, &q);
        pthread_mutex_unlock(&lock);
        return e;
    }
    struct work *w = work_new(W_FN);
    if (w) {
        w->u.fn.fn = fn;
        w->u.fn.arg = arg;
    }
    return enqueue(stream, 0, w, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------- events */

API hipError_t hipEventCreate(hipEvent_t *event) { return ret(event_create(event, 0)); }

API hipError_t hipEventCreateWithFlags(hipEvent_t *event, unsigned flags) {
    return ret(event_create(event, flags));
}

API hipError_t hipEventRecord(hipEvent_t event, hipStream_t stream) {
    struct queue *q;
    pthread_mutex_lock(&lock);
    struct ihipEvent_t *e = find_event_l(event);
    hipError_t err = e == NULL ? hipErrorInvalidHandle : resolve_l(stream, 0, &q);
    struct work *w = err == hipSuccess ? work_new(W_RECORD) : NULL;
    if (err == hipSuccess && !w) err = hipErrorOutOfMemory;
    if (err == hipSuccess) {
        w->u.event = e;
        /* The event's point is this item: known before it is queued, so that a wait or query
         * issued right after names it even while this call waits for room in the queue. */
        e->recorded = 1;
        e->q = q;
        e->ticket = q->enq + 1;
        uint64_t t = submit_l(q, w, NULL);
        if (t == 0) err = hipErrorOutOfMemory;
        else if (e == find_event_l(event)) e->ticket = t;
    }
    pthread_mutex_unlock(&lock);
    return ret(err);
}

API hipError_t hipEventSynchronize(hipEvent_t event) {
    pthread_mutex_lock(&lock);
    struct ihipEvent_t *e = find_event_l(event);
    if (e && e->recorded && !sync_mode()) wait_l(e->q, e->ticket);
    pthread_mutex_unlock(&lock);
    return e ? hipSuccess : ret(hipErrorInvalidHandle);
}

API hipError_t hipEventQuery(hipEvent_t event) {
    pthread_mutex_lock(&lock);
    struct ihipEvent_t *e = find_event_l(event);
    int done = !e || !e->recorded || sync_mode() || e->q->done >= e->ticket;
    pthread_mutex_unlock(&lock);
    if (!e) return ret(hipErrorInvalidHandle);
    return done ? hipSuccess : hipErrorNotReady;
}

API hipError_t hipEventElapsedTime(float *ms, hipEvent_t start, hipEvent_t stop) {
    if (ms == NULL) return ret(hipErrorInvalidValue);
    pthread_mutex_lock(&lock);
    struct ihipEvent_t *a = find_event_l(start), *b = find_event_l(stop);
    hipError_t err = hipSuccess;
    if (a == NULL || b == NULL) err = hipErrorInvalidHandle;
    else if ((a->flags | b->flags) & hipEventDisableTiming) err = hipErrorInvalidHandle;
    else if (!a->recorded || !b->recorded) err = hipErrorInvalidHandle;
    else if (a->q->done < a->ticket || b->q->done < b->ticket) err = hipErrorNotReady;
    else
        *ms = (float)((double)(b->when.tv_sec - a->when.tv_sec) * 1e3 +
                      (double)(b->when.tv_nsec - a->when.tv_nsec) / 1e6);
    pthread_mutex_unlock(&lock);
    return err == hipErrorNotReady ? err : ret(err);
}

API hipError_t hipEventDestroy(hipEvent_t event) {
    struct ihipEvent_t *found = NULL;
    pthread_mutex_lock(&lock);
    for (struct ihipEvent_t **pp = &events; *pp; pp = &(*pp)->next)
        if (*pp == event) {
            found = *pp;
            *pp = found->next;
            break;
        }
    pthread_mutex_unlock(&lock);
    if (!found) return ret(hipErrorInvalidHandle);
    found->magic = 0;
    free(found);
    return hipSuccess;
}

/* ---------------------------------------------------------------- memory */

API hipError_t hipMalloc(void **ptr, size_t size) {
    return ret(alloc_mem(ptr, size, current_device));
}

API hipError_t hipFree(void *ptr) {
    if (ptr == NULL) return hipSuccess;
    return ret(free_mem(ptr, 0) ? hipSuccess : hipErrorInvalidValue);
}

API hipError_t hipHostMalloc(void **ptr, size_t size, unsigned int flags) {
    (void)flags;
    return ret(alloc_mem(ptr, size, -1));
}

API hipError_t hipHostFree(void *ptr) {
    if (ptr == NULL) return hipSuccess;
    return ret(free_mem(ptr, 1) ? hipSuccess : hipErrorInvalidValue);
}

static hipError_t memcpy_sync(void *dst, const void *src, size_t n, hipMemcpyKind kind, int spt) {
    hipError_t e = copy_check(dst, src, n, kind);
    if (e != hipSuccess) return ret(e);
    return ret(enqueue_wait(NULL, spt, copy_work(dst, src, n)));
}

API hipError_t hipMemcpy(void *dst, const void *src, size_t sizeBytes, hipMemcpyKind kind) {
    return memcpy_sync(dst, src, sizeBytes, kind, 0);
}

API hipError_t hipMemcpy_spt(void *dst, const void *src, size_t sizeBytes, hipMemcpyKind kind) {
    return memcpy_sync(dst, src, sizeBytes, kind, 1);
}

static hipError_t memcpy_async(void *dst, const void *src, size_t n, hipMemcpyKind kind,
                               hipStream_t stream, int spt) {
    hipError_t e = copy_check(dst, src, n, kind);
    if (e != hipSuccess) {
        /* A bad stream is reported before bad pointers, as before. */
        struct queue *q;
        pthread_mutex_lock(&lock);
        hipError_t se = resolve_l(stream, spt, &q);
        pthread_mutex_unlock(&lock);
        return ret(se != hipSuccess ? se : e);
    }
    return ret(enqueue(stream, spt, copy_work(dst, src, n), NULL, NULL, NULL));
}

API hipError_t hipMemcpyAsync(void *dst, const void *src, size_t sizeBytes, hipMemcpyKind kind,
                              hipStream_t stream) {
    return memcpy_async(dst, src, sizeBytes, kind, stream, 0);
}

API hipError_t hipMemcpyAsync_spt(void *dst, const void *src, size_t sizeBytes, hipMemcpyKind kind,
                                  hipStream_t stream) {
    return memcpy_async(dst, src, sizeBytes, kind, stream, 1);
}

API hipError_t hipMemset(void *dst, int value, size_t sizeBytes) {
    if (!device_ptr_ok(dst, sizeBytes)) return ret(hipErrorInvalidValue);
    return ret(enqueue_wait(NULL, 0, set_work(dst, value, sizeBytes)));
}

API hipError_t hipMemsetAsync(void *dst, int value, size_t sizeBytes, hipStream_t stream) {
    struct queue *q;
    pthread_mutex_lock(&lock);
    hipError_t e = resolve_l(stream, 0, &q);
    pthread_mutex_unlock(&lock);
    if (e != hipSuccess) return ret(e);
    if (!device_ptr_ok(dst, sizeBytes)) return ret(hipErrorInvalidValue);
    return ret(enqueue(stream, 0, set_work(dst, value, sizeBytes), NULL, NULL, NULL));
}

API hipError_t hipMemcpyPeerAsync(void *dst, int dstDeviceId, const void *src, int srcDevice,
                                  size_t sizeBytes, hipStream_t stream) {
    if (!valid_device(dstDeviceId) || !valid_device(srcDevice)) return ret(hipErrorInvalidDevice);
    return memcpy_async(dst, src, sizeBytes, hipMemcpyDeviceToDevice, stream, 0);
}

/* ---------------------------------------------------------------- kernels */

static hipError_t launch(const void *function_address, dim3 numBlocks, dim3 dimBlocks,
                         size_t sharedMemBytes, hipStream_t stream, int spt) {
    if (function_address == NULL) return ret(hipErrorInvalidDeviceFunction);
    if (numBlocks.x == 0 || numBlocks.y == 0 || numBlocks.z == 0 || dimBlocks.x == 0 ||
        dimBlocks.y == 0 || dimBlocks.z == 0 ||
        (uint64_t)dimBlocks.x * dimBlocks.y * dimBlocks.z > 1024 || sharedMemBytes > 65536)
        return ret(hipErrorInvalidConfiguration);
    /* No device code can run: the "kernel" occupies its stream for $STANDIN_HIP_KERNEL_US. */
    struct work *w = work_new(W_KERNEL);
    if (w) w->u.us = env_long("STANDIN_HIP_KERNEL_US", 0);
    return ret(enqueue(stream, spt, w, NULL, NULL, NULL));
}

API hipError_t hipLaunchKernel(const void *function_address, dim3 numBlocks, dim3 dimBlocks,
                               void **args, size_t sharedMemBytes, hipStream_t stream) {
    (void)args;
    return launch(function_address, numBlocks, dimBlocks, sharedMemBytes, stream, 0);
}

API hipError_t hipLaunchKernel_spt(const void *function_address, dim3 numBlocks, dim3 dimBlocks,
                                   void **args, size_t sharedMemBytes, hipStream_t stream) {
    (void)args;
    return launch(function_address, numBlocks, dimBlocks, sharedMemBytes, stream, 1);
}

/* ---------------------------------------------------------------- errors */

static const char *error_name(hipError_t e) {
    switch (e) {
    case hipSuccess: return "hipSuccess";
    case hipErrorInvalidValue: return "hipErrorInvalidValue";
    case hipErrorOutOfMemory: return "hipErrorOutOfMemory";
    case hipErrorNotInitialized: return "hipErrorNotInitialized";
    case hipErrorInvalidConfiguration: return "hipErrorInvalidConfiguration";
    case hipErrorInvalidDevicePointer: return "hipErrorInvalidDevicePointer";
    case hipErrorInvalidMemcpyDirection: return "hipErrorInvalidMemcpyDirection";
    case hipErrorInvalidDeviceFunction: return "hipErrorInvalidDeviceFunction";
    case hipErrorNoDevice: return "hipErrorNoDevice";
    case hipErrorInvalidDevice: return "hipErrorInvalidDevice";
    case hipErrorInvalidHandle: return "hipErrorInvalidHandle";
    case hipErrorNotReady: return "hipErrorNotReady";
    case hipErrorPeerAccessAlreadyEnabled: return "hipErrorPeerAccessAlreadyEnabled";
    case hipErrorNotSupported: return "hipErrorNotSupported";
    default: return "hipErrorUnknown";
    }
}

API const char *hipGetErrorName(hipError_t hip_error) { return error_name(hip_error); }

/* ROCm 5.2's hipGetErrorString returns the same text as hipGetErrorName. */
API const char *hipGetErrorString(hipError_t hipError) { return error_name(hipError); }

API hipError_t hipGetLastError(void) {
    hipError_t e = last_error;
    last_error = hipSuccess;
    return e;
}

API hipError_t hipPeekAtLastError(void) { return last_error; }
