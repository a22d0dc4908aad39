/* Stand-in for the ROCm HIP runtime (libamdhip64.so.5) for tests on machines without a GPU.
 *
 * Same names, signatures, enum values and symbol version (hip_4.2, see hip_standin.map) as the
 * real library, so a program and a tracer work unchanged on either. "Devices" are simulated:
 * hipGetDeviceCount reports 8 (or $STANDIN_HIP_DEVICES), the current device is per thread
 * (default 0), device memory is host memory from malloc, and all work is done synchronously at
 * the call (streams and events are real heap objects, so handles are distinct opaque pointers
 * and bad handles are rejected with hipErrorInvalidHandle instead of crashing).
 * Error strings are the ones of ROCm 5.2 (Debian 12): hipGetErrorString returns the enum name.
 * Build: tests/standins/build.sh */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "standin_api.h"

#define API __attribute__((visibility("default"), noinline))

#define STREAM_MAGIC 0x5354524d /* "STRM" */
#define EVENT_MAGIC 0x45564e54  /* "EVNT" */

struct ihipStream_t {
    uint32_t magic;
    int device;
    unsigned flags;
    int priority;
    uint64_t ops; /* work items "executed" on the stream */
    struct ihipStream_t *next;
};

struct ihipEvent_t {
    uint32_t magic;
    int device;
    unsigned flags;
    int recorded;
    struct timespec when;
    hipStream_t stream;
    struct ihipEvent_t *next;
};

struct alloc {
    char *ptr;
    size_t size;
    int device; /* -1: pinned host memory (hipHostMalloc) */
    struct alloc *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct ihipStream_t *streams;
static struct ihipEvent_t *events;
static struct alloc *allocs;

static __thread int current_device;
static __thread hipError_t last_error = hipSuccess;

/* Records err as the thread's last error (like HIP's HIP_RETURN) and returns it. */
static hipError_t ret(hipError_t err) {
    if (err != hipSuccess) last_error = err;
    return err;
}

static int device_count(void) {
    const char *s = getenv("STANDIN_HIP_DEVICES");
    if (s && *s) {
        char *end;
        long n = strtol(s, &end, 10);
        if (*end == '\0' && n >= 0 && n <= 1024) return (int)n;
    }
    return 8;
}

static int valid_device(int d) { return d >= 0 && d < device_count(); }

/* A stream argument: NULL is the null stream; anything else must be a live stream. */
static int valid_stream(hipStream_t s) {
    if (s == NULL) return 1;
    int ok = 0;
    pthread_mutex_lock(&lock);
    for (struct ihipStream_t *p = streams; p; p = p->next)
        if (p == s) { ok = 1; break; }
    pthread_mutex_unlock(&lock);
    return ok;
}

static struct ihipEvent_t *find_event(hipEvent_t e) {
    struct ihipEvent_t *found = NULL;
    pthread_mutex_lock(&lock);
    for (struct ihipEvent_t *p = events; p; p = p->next)
        if (p == e) { found = p; break; }
    pthread_mutex_unlock(&lock);
    return found;
}

static void stream_op(hipStream_t s) {
    if (s) __atomic_add_fetch(&s->ops, 1, __ATOMIC_RELAXED);
}

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

static hipError_t copy(void *dst, const void *src, size_t n, hipMemcpyKind kind) {
    int ok;
    switch (kind) {
    case hipMemcpyHostToHost: ok = any_ptr_ok(dst, n) && any_ptr_ok(src, n); break;
    case hipMemcpyHostToDevice: ok = device_ptr_ok(dst, n) && any_ptr_ok(src, n); break;
    case hipMemcpyDeviceToHost: ok = any_ptr_ok(dst, n) && device_ptr_ok(src, n); break;
    case hipMemcpyDeviceToDevice: ok = device_ptr_ok(dst, n) && device_ptr_ok(src, n); break;
    case hipMemcpyDefault: ok = any_ptr_ok(dst, n) && any_ptr_ok(src, n); break;
    default: return hipErrorInvalidMemcpyDirection;
    }
    if (!ok) return hipErrorInvalidValue;
    if (n) memmove(dst, src, n);
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

/* Frees an allocation of the wanted kind (host: pinned or not); 0 if ptr is not one. */
static int free_mem(void *ptr, int host) {
    struct alloc *found = NULL;
    pthread_mutex_lock(&lock);
    for (struct alloc **pp = &allocs; *pp; pp = &(*pp)->next)
        if ((*pp)->ptr == ptr && ((*pp)->device < 0) == host) {
            found = *pp;
            *pp = found->next;
            break;
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
    s->next = streams;
    streams = s;
    pthread_mutex_unlock(&lock);
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
    /* All work completes at submission; this is a full memory barrier, as a sync point. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return ret(device_count() == 0 ? hipErrorNoDevice : hipSuccess);
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
    pthread_mutex_unlock(&lock);
    if (!found) return ret(hipErrorInvalidHandle);
    found->magic = 0;
    free(found);
    return hipSuccess;
}

API hipError_t hipStreamSynchronize(hipStream_t stream) {
    if (!valid_stream(stream)) return ret(hipErrorInvalidHandle);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return hipSuccess;
}

API hipError_t hipStreamQuery(hipStream_t stream) {
    /* Work is done at submission, so a stream is always idle: hipSuccess, never hipErrorNotReady. */
    if (!valid_stream(stream)) return ret(hipErrorInvalidHandle);
    return hipSuccess;
}

API hipError_t hipStreamWaitEvent(hipStream_t stream, hipEvent_t event, unsigned int flags) {
    if (flags != 0) return ret(hipErrorInvalidValue);
    if (!valid_stream(stream) || find_event(event) == NULL) return ret(hipErrorInvalidHandle);
    stream_op(stream);
    return hipSuccess;
}

API hipError_t hipStreamGetFlags(hipStream_t stream, unsigned int *flags) {
    if (flags == NULL) return ret(hipErrorInvalidValue);
    if (!valid_stream(stream)) return ret(hipErrorInvalidHandle);
    *flags = stream ? stream->flags : 0;
    return hipSuccess;
}

/* ---------------------------------------------------------------- events */

API hipError_t hipEventCreate(hipEvent_t *event) { return ret(event_create(event, 0)); }

API hipError_t hipEventCreateWithFlags(hipEvent_t *event, unsigned flags) {
    return ret(event_create(event, flags));
}

API hipError_t hipEventRecord(hipEvent_t event, hipStream_t stream) {
    struct ihipEvent_t *e = find_event(event);
    if (e == NULL || !valid_stream(stream)) return ret(hipErrorInvalidHandle);
    clock_gettime(CLOCK_MONOTONIC, &e->when);
    e->stream = stream;
    e->recorded = 1;
    stream_op(stream);
    return hipSuccess;
}

API hipError_t hipEventSynchronize(hipEvent_t event) {
    if (find_event(event) == NULL) return ret(hipErrorInvalidHandle);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return hipSuccess;
}

API hipError_t hipEventQuery(hipEvent_t event) {
    if (find_event(event) == NULL) return ret(hipErrorInvalidHandle);
    return hipSuccess;
}

API hipError_t hipEventElapsedTime(float *ms, hipEvent_t start, hipEvent_t stop) {
    if (ms == NULL) return ret(hipErrorInvalidValue);
    struct ihipEvent_t *a = find_event(start), *b = find_event(stop);
    if (a == NULL || b == NULL) return ret(hipErrorInvalidHandle);
    if ((a->flags | b->flags) & hipEventDisableTiming) return ret(hipErrorInvalidHandle);
    if (!a->recorded || !b->recorded) return ret(hipErrorInvalidHandle);
    double d = (double)(b->when.tv_sec - a->when.tv_sec) * 1e3 +
               (double)(b->when.tv_nsec - a->when.tv_nsec) / 1e6;
    *ms = (float)d;
    return hipSuccess;
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

API hipError_t hipMemcpy(void *dst, const void *src, size_t sizeBytes, hipMemcpyKind kind) {
    return ret(copy(dst, src, sizeBytes, kind));
}

API hipError_t hipMemcpyAsync(void *dst, const void *src, size_t sizeBytes, hipMemcpyKind kind,
                              hipStream_t stream) {
    if (!valid_stream(stream)) return ret(hipErrorInvalidHandle);
    hipError_t e = copy(dst, src, sizeBytes, kind);
    if (e == hipSuccess) stream_op(stream);
    return ret(e);
}

API hipError_t hipMemset(void *dst, int value, size_t sizeBytes) {
    if (!device_ptr_ok(dst, sizeBytes)) return ret(hipErrorInvalidValue);
    if (sizeBytes) memset(dst, value, sizeBytes);
    return hipSuccess;
}

API hipError_t hipMemsetAsync(void *dst, int value, size_t sizeBytes, hipStream_t stream) {
    if (!valid_stream(stream)) return ret(hipErrorInvalidHandle);
    if (!device_ptr_ok(dst, sizeBytes)) return ret(hipErrorInvalidValue);
    if (sizeBytes) memset(dst, value, sizeBytes);
    stream_op(stream);
    return hipSuccess;
}

API hipError_t hipMemcpyPeerAsync(void *dst, int dstDeviceId, const void *src, int srcDevice,
                                  size_t sizeBytes, hipStream_t stream) {
    if (!valid_device(dstDeviceId) || !valid_device(srcDevice)) return ret(hipErrorInvalidDevice);
    if (!valid_stream(stream)) return ret(hipErrorInvalidHandle);
    hipError_t e = copy(dst, src, sizeBytes, hipMemcpyDeviceToDevice);
    if (e == hipSuccess) stream_op(stream);
    return ret(e);
}

/* ---------------------------------------------------------------- kernels */

API hipError_t hipLaunchKernel(const void *function_address, dim3 numBlocks, dim3 dimBlocks,
                               void **args, size_t sharedMemBytes, hipStream_t stream) {
    (void)args;
    if (function_address == NULL) return ret(hipErrorInvalidDeviceFunction);
    if (numBlocks.x == 0 || numBlocks.y == 0 || numBlocks.z == 0 || dimBlocks.x == 0 ||
        dimBlocks.y == 0 || dimBlocks.z == 0 ||
        (uint64_t)dimBlocks.x * dimBlocks.y * dimBlocks.z > 1024 || sharedMemBytes > 65536)
        return ret(hipErrorInvalidConfiguration);
    if (!valid_stream(stream)) return ret(hipErrorInvalidHandle);
    /* No device code can run: the launch is only accounted on the stream. */
    stream_op(stream);
    return hipSuccess;
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
