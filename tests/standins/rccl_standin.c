/* Stand-in for RCCL (librccl.so.1, the NCCL API on ROCm) for tests on machines without a GPU.
 *
 * Same names, signatures, types and enum values as RCCL's nccl.h (NCCL 2.18.3 API, see
 * standin_api.h); like Debian's real librccl.so.1 the symbols are plain, unversioned names (no
 * pnccl* aliases). Communicators really synchronise ACROSS PROCESSES:
 *
 *   - ncclGetUniqueId fills the id like NCCL's bootstrap handle: a random 8-byte magic, then a
 *     socket address (AF_INET 127.0.0.1:port), the rest zero.
 *   - ncclCommInitRank asks the HIP runtime for the current device (hipGetDevice, as RCCL does)
 *     and joins a rendezvous in POSIX shared memory named after the magic
 *     (/dev/shm/standin-rccl-<magic hex>): whichever rank arrives first creates it, ranks may
 *     arrive in any order, and init returns once all nranks have joined. The last rank to leave
 *     unlinks it. Init, ncclCommSplit and ncclCommDestroy are synchronous, as on RCCL.
 *   - Collectives and Send/Recv are asynchronous, as on a GPU: the call checks its arguments,
 *     takes the per-rank sequence number, queues the operation on its HIP stream and returns
 *     ncclSuccess at once. The stream's worker thread (the HIP stand-in's "device") runs it
 *     when the stream reaches it: the rendezvous waits until all nranks reached the same
 *     collective, then moves the data through the shared memory (in chunks of
 *     $STANDIN_RCCL_CHUNK_BYTES, default 4 MiB) and reduces on the host: buffers are host
 *     memory, since the HIP stand-in's hipMalloc is malloc. All types and ncclSum/Prod/Max/Min/Avg
 *     are implemented, bitwise identically on every rank. The queued item owns a copy of the
 *     operation. It is queued with standin_hip_enqueue (standin_private.h), not a HIP API
 *     call, so a tracer sees no hip call from inside a collective. A communicator's items run
 *     in the order they were queued, whatever their streams.
 *   - ncclGroupStart..ncclGroupEnd: the group's operations are queued at ncclGroupEnd as ONE
 *     item, which returns at once; with several streams, the group runs once every stream
 *     reached it, and their later work waits for it. A group with an init in it runs at
 *     ncclGroupEnd, synchronously.
 *   - Send/Recv go through one mailbox per ordered rank pair; a send completes once its data is
 *     in the mailbox (so exchanging pairs do not deadlock), a receive when the data arrived.
 *   - Ranks whose collectives at the same sequence number differ (kind, type, count, op, root)
 *     hang on the device like mismatched collectives on a GPU: the call returns, the stream's
 *     work waits (so does a host sync of it).
 *   - A wait on the device gives up after $STANDIN_RCCL_TIMEOUT_MS (default 10000; 0 = wait
 *     forever): the communicator then keeps ncclSystemError (2), the code real NCCL gives when
 *     its bootstrap/proxy socket waits fail, as its asynchronous error (ncclCommGetAsyncError);
 *     the stream's later work still runs, so a host sync returns; later calls on the
 *     communicator fail with it at the call, and items already queued are dropped. A warning
 *     naming the missing ranks goes to stderr (unless $STANDIN_RCCL_QUIET=1). On real
 *     hardware a rank that skips a collective leaves the others hanging forever; the timeout
 *     only keeps tests finite. Init still times out at the call, after its own, longer wait
 *     ($STANDIN_RCCL_INIT_TIMEOUT_MS, default the larger of 60 s and the timeout).
 *   - ncclCommAbort returns at once and ends the communicator's waiting and queued work (the
 *     streams go on); the handle stays readable by ncclCommGetAsyncError (ncclSystemError
 *     unless it had an error already) and every other call on it fails (ncclInvalidArgument).
 *     ncclCommDestroy first waits for the communicator's queued work to complete (forever if
 *     it hangs: abort instead).
 * $STANDIN_SYNC=1 (read once; the HIP stand-in reads it too) restores the old synchronous
 * model: every collective blocks at the call (in ncclGroupEnd in a group) until it completed
 * or timed out, and then returns ncclSystemError itself.
 * Build: tests/standins/build.sh */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "standin_api.h"
#include "standin_private.h"

#define API __attribute__((visibility("default"), noinline))

#define SHM_READY 0x52434c53u  /* "RCLS": header initialised */
#define COMM_MAGIC 0x434f4d4du /* "COMM" */
#define ABORTED_MAGIC 0x41424f52u /* "ABOR": an aborted communicator, kept for its error */
#define CONFIG_MAGIC 0xcafebeefu
#define TIMEOUT_ERROR ncclSystemError

enum coll { C_ALLREDUCE, C_BROADCAST, C_REDUCE, C_ALLGATHER, C_REDUCESCATTER, C_ALLTOALL, C_SPLIT };
static const char *const coll_names[] = {"AllReduce", "Broadcast", "Reduce", "AllGather",
                                         "ReduceScatter", "AllToAll", "CommSplit"};

enum slot_state { S_IDLE, S_COLL, S_P2P, S_TIMEDOUT, S_LEFT };

/* ---------------------------------------------------------------- shared memory layout */

struct desc {
    int32_t coll, dtype, redop, root;
    uint64_t count, seq;
};

struct slot {
    int32_t joined;
    int32_t pid;
    int32_t device;
    int32_t state;     /* enum slot_state, for diagnostics */
    uint64_t entered;  /* collectives this rank has entered */
    struct desc desc;  /* the one it is in */
} __attribute__((aligned(64)));

struct chan { /* mailbox src -> dst */
    uint32_t posted, acked; /* futex words: a message is waiting while posted != acked */
    uint64_t bytes;
} __attribute__((aligned(64)));

struct shm_hdr {
    uint32_t ready; /* SHM_READY once initialised */
    int32_t nranks;
    uint64_t total_size, coll_cap, p2p_cap, slots_off, chans_off, coll_off, p2p_off;
    pthread_mutex_t mtx; /* robust, process-shared */
    uint32_t gen;        /* barrier generation: futex word */
    int32_t count;       /* ranks arrived at the current barrier */
    int32_t refs;        /* ranks holding the segment */
    int32_t unused;
};

/* 112 bytes, the size rccl_ranks.c's padding assumes. */
struct ncclComm {
    uint32_t magic;
    int rank, nranks, device;
    uint64_t id;
    char name[32];
    struct shm_hdr *hdr; /* NULL once detached */
    size_t map_size;
    uint64_t seq;    /* collectives issued */
    uint32_t splits; /* ncclCommSplit calls, to derive child ids */
    int blocking;
    ncclResult_t error; /* sticky asynchronous error (atomic: workers set it) */
    int aborted;        /* ncclCommAbort was called (atomic) */
    /* Queued items (under qlock): item number `issued` was the last queued, item `turn` runs
     * next; items of one communicator run in that order, whatever their streams. */
    uint64_t issued, turn;
};
_Static_assert(sizeof(struct ncclComm) == 112, "rccl_ranks.c pads with malloc(112)");

static struct slot *slot_of(struct shm_hdr *h, int r) {
    return (struct slot *)((char *)h + h->slots_off) + r;
}
static struct chan *chan_of(struct shm_hdr *h, int src, int dst) {
    return (struct chan *)((char *)h + h->chans_off) + (size_t)src * h->nranks + dst;
}
static char *coll_data(struct shm_hdr *h, int r) {
    return (char *)h + h->coll_off + (size_t)r * h->coll_cap;
}
static char *p2p_data(struct shm_hdr *h, int src, int dst) {
    return (char *)h + h->p2p_off + ((size_t)src * h->nranks + dst) * h->p2p_cap;
}

/* ---------------------------------------------------------------- helpers */

/* The last warning, for ncclGetLastError: process-wide, since workers write it too. */
static char last_error[256];
static pthread_mutex_t warn_lock = PTHREAD_MUTEX_INITIALIZER;

static void warn(const char *fmt, ...) {
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&warn_lock);
    memcpy(last_error, msg, sizeof msg);
    pthread_mutex_unlock(&warn_lock);
    const char *q = getenv("STANDIN_RCCL_QUIET");
    if (!(q && *q && *q != '0')) fprintf(stderr, "standin-rccl WARN pid %d: %s\n", getpid(), msg);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long env_long(const char *name, long dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    return *end ? dflt : v;
}

/* Timeout in ns, or INT64_MAX for none. */
static int64_t timeout_ns(void) {
    long ms = env_long("STANDIN_RCCL_TIMEOUT_MS", 10000);
    return ms <= 0 ? INT64_MAX : (int64_t)ms * 1000000;
}

static int64_t deadline_after(int64_t t) {
    int64_t to = timeout_ns();
    return to == INT64_MAX ? INT64_MAX : t + to;
}

/* Init's rendezvous waits for ranks that are still starting (forked, on a loaded machine,
 * under a tracer): it gets $STANDIN_RCCL_INIT_TIMEOUT_MS, by default at least 60 s, so that a
 * test's short collective timeout (-t) does not also fail the slowest rank's start. */
static int64_t init_deadline_after(int64_t t) {
    int64_t to = timeout_ns();
    long ms = env_long("STANDIN_RCCL_INIT_TIMEOUT_MS", 0);
    if (ms > 0) to = (int64_t)ms * 1000000;
    else if (to != INT64_MAX && to < (int64_t)60000 * 1000000) to = (int64_t)60000 * 1000000;
    return to == INT64_MAX ? INT64_MAX : t + to;
}

static void futex_wait(uint32_t *addr, uint32_t val, int64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    syscall(SYS_futex, addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake(uint32_t *addr) {
    syscall(SYS_futex, addr, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

static void hdr_lock(struct shm_hdr *h) {
    if (pthread_mutex_lock(&h->mtx) == EOWNERDEAD) pthread_mutex_consistent(&h->mtx);
}
static void hdr_unlock(struct shm_hdr *h) { pthread_mutex_unlock(&h->mtx); }

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t type_size(int t) {
    switch (t) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
    }
}

static int valid_comm(const struct ncclComm *c) { return c != NULL && c->magic == COMM_MAGIC; }

static ncclResult_t comm_error(const struct ncclComm *c) {
    return __atomic_load_n(&c->error, __ATOMIC_ACQUIRE);
}

/* Sets the communicator's sticky error unless it has one. */
static void set_comm_error(struct ncclComm *c, ncclResult_t r) {
    ncclResult_t none = ncclSuccess;
    __atomic_compare_exchange_n(&c->error, &none, r, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static int sync_flag;
static pthread_once_t sync_once = PTHREAD_ONCE_INIT;
static void read_sync(void) { sync_flag = env_long("STANDIN_SYNC", 0) != 0; }
/* $STANDIN_SYNC=1: collectives block at the call, as the stand-in did before HIP streams had
 * workers. */
static int sync_mode(void) {
    pthread_once(&sync_once, read_sync);
    return sync_flag;
}

/* ---------------------------------------------------------------- reductions */

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, f;
    if (exp == 0) {
        if (man == 0) f = sign;
        else { /* subnormal */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            f = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) f = sign | 0x7f800000 | (man << 13);
    else f = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float out;
    memcpy(&out, &f, 4);
    return out;
}

static uint16_t float_to_half(float v) {
    uint32_t f;
    memcpy(&f, &v, 4);
    uint32_t sign = (f >> 16) & 0x8000;
    int32_t exp = (int32_t)((f >> 23) & 0xff) - 127 + 15;
    uint32_t man = f & 0x7fffff;
    if (((f >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 0x1f) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)half;
}

static float bf16_to_float(uint16_t b) {
    uint32_t f = (uint32_t)b << 16;
    float out;
    memcpy(&out, &f, 4);
    return out;
}

static uint16_t float_to_bf16(float v) {
    uint32_t f;
    memcpy(&f, &v, 4);
    if ((f & 0x7f800000) == 0x7f800000 && (f & 0x7fffff)) return (uint16_t)((f >> 16) | 0x40);
    f += 0x7fff + ((f >> 16) & 1);
    return (uint16_t)(f >> 16);
}

#define ID(x) (x)
#define DEF_REDUCE(NAME, T, ACC, LOAD, STORE)                                                  \
    static void NAME(void *dst, const void *const *src, int nr, size_t n, int op) {            \
        for (size_t i = 0; i < n; i++) {                                                       \
            ACC acc = LOAD(((const T *)src[0])[i]);                                            \
            for (int r = 1; r < nr; r++) {                                                     \
                ACC v = LOAD(((const T *)src[r])[i]);                                          \
                switch (op) {                                                                  \
                case ncclProd: acc = acc * v; break;                                           \
                case ncclMax: acc = v > acc ? v : acc; break;                                  \
                case ncclMin: acc = v < acc ? v : acc; break;                                  \
                default: acc = acc + v; break; /* ncclSum, ncclAvg */                          \
                }                                                                              \
            }                                                                                  \
            if (op == ncclAvg) acc = acc / (ACC)nr;                                            \
            ((T *)dst)[i] = STORE(acc);                                                        \
        }                                                                                      \
    }

/* Integer wrap-around is defined: the library is built with -fwrapv. */
DEF_REDUCE(reduce_i8, int8_t, int8_t, ID, ID)
DEF_REDUCE(reduce_u8, uint8_t, uint8_t, ID, ID)
DEF_REDUCE(reduce_i32, int32_t, int32_t, ID, ID)
DEF_REDUCE(reduce_u32, uint32_t, uint32_t, ID, ID)
DEF_REDUCE(reduce_i64, int64_t, int64_t, ID, ID)
DEF_REDUCE(reduce_u64, uint64_t, uint64_t, ID, ID)
DEF_REDUCE(reduce_f16, uint16_t, float, half_to_float, float_to_half)
DEF_REDUCE(reduce_f32, float, float, ID, ID)
DEF_REDUCE(reduce_f64, double, double, ID, ID)
DEF_REDUCE(reduce_bf16, uint16_t, float, bf16_to_float, float_to_bf16)

static void reduce(int dtype, int op, void *dst, const void *const *src, int nr, size_t n) {
    switch (dtype) {
    case ncclInt8: reduce_i8(dst, src, nr, n, op); break;
    case ncclUint8: reduce_u8(dst, src, nr, n, op); break;
    case ncclInt32: reduce_i32(dst, src, nr, n, op); break;
    case ncclUint32: reduce_u32(dst, src, nr, n, op); break;
    case ncclInt64: reduce_i64(dst, src, nr, n, op); break;
    case ncclUint64: reduce_u64(dst, src, nr, n, op); break;
    case ncclFloat16: reduce_f16(dst, src, nr, n, op); break;
    case ncclFloat32: reduce_f32(dst, src, nr, n, op); break;
    case ncclFloat64: reduce_f64(dst, src, nr, n, op); break;
    case ncclBfloat16: reduce_bf16(dst, src, nr, n, op); break;
    }
}

/* ---------------------------------------------------------------- rendezvous */

static void shm_name(char *buf, size_t len, uint64_t id) {
    snprintf(buf, len, "/standin-rccl-%016llx", (unsigned long long)id);
}

static size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Creates (first rank) or opens the segment of communicator `id` and maps it. */
static ncclResult_t shm_attach(const char *name, int nranks, int64_t deadline,
                               struct shm_hdr **out, size_t *out_size) {
    long page = sysconf(_SC_PAGESIZE);
    for (;;) {
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd >= 0) { /* creator */
            size_t coll_cap = (size_t)env_long("STANDIN_RCCL_CHUNK_BYTES", 4 << 20);
            size_t coll_max = ((size_t)256 << 20) / (size_t)nranks;
            if (coll_cap > coll_max) coll_cap = coll_max;
            if (coll_cap < 65536) coll_cap = 65536;
            coll_cap = round_up(coll_cap, 64);
            size_t p2p_cap = ((size_t)64 << 20) / ((size_t)nranks * nranks);
            if (p2p_cap > 256 << 10) p2p_cap = 256 << 10;
            if (p2p_cap < 4096) p2p_cap = 4096;
            p2p_cap = round_up(p2p_cap, 64);
            size_t slots_off = round_up(sizeof(struct shm_hdr), 64);
            size_t chans_off = slots_off + sizeof(struct slot) * (size_t)nranks;
            size_t coll_off = round_up(chans_off + sizeof(struct chan) * (size_t)nranks * nranks, page);
            size_t p2p_off = coll_off + coll_cap * (size_t)nranks;
            size_t total = round_up(p2p_off + p2p_cap * (size_t)nranks * nranks, page);
            if (ftruncate(fd, (off_t)total) != 0) {
                warn("ftruncate %s (%zu bytes): %s", name, total, strerror(errno));
                close(fd);
                shm_unlink(name);
                return ncclSystemError;
            }
            struct shm_hdr *h = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            close(fd);
            if (h == MAP_FAILED) {
                shm_unlink(name);
                return ncclSystemError;
            }
            h->nranks = nranks;
            h->total_size = total;
            h->coll_cap = coll_cap;
            h->p2p_cap = p2p_cap;
            h->slots_off = slots_off;
            h->chans_off = chans_off;
            h->coll_off = coll_off;
            h->p2p_off = p2p_off;
            pthread_mutexattr_t a;
            pthread_mutexattr_init(&a);
            pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
            pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
            pthread_mutex_init(&h->mtx, &a);
            pthread_mutexattr_destroy(&a);
            __atomic_store_n(&h->ready, SHM_READY, __ATOMIC_RELEASE);
            *out = h;
            *out_size = total;
            return ncclSuccess;
        }
        if (errno != EEXIST) {
            warn("shm_open %s: %s", name, strerror(errno));
            return ncclSystemError;
        }
        fd = shm_open(name, O_RDWR, 0600);
        if (fd < 0) {
            if (errno == ENOENT) continue; /* its last user just unlinked it: start over */
            warn("shm_open %s: %s", name, strerror(errno));
            return ncclSystemError;
        }
        /* Wait until the creator has sized and initialised it. */
        struct shm_hdr *h = NULL;
        for (;;) {
            struct stat st;
            if (fstat(fd, &st) == 0 && st.st_size >= page) {
                if (!h) h = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (h == MAP_FAILED) { close(fd); return ncclSystemError; }
                if (__atomic_load_n(&h->ready, __ATOMIC_ACQUIRE) == SHM_READY) break;
            }
            if (now_ns() > deadline) {
                warn("timed out waiting for %s to be initialised", name);
                if (h) munmap(h, (size_t)page);
                close(fd);
                return TIMEOUT_ERROR;
            }
            usleep(1000);
        }
        size_t total = h->total_size;
        munmap(h, (size_t)page);
        h = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (h == MAP_FAILED) return ncclSystemError;
        *out = h;
        *out_size = total;
        return ncclSuccess;
    }
}

/* Leaves the segment: the last rank out unlinks it. */
static void comm_detach(struct ncclComm *c, int state) {
    struct shm_hdr *h = c->hdr;
    if (!h) return;
    hdr_lock(h);
    struct slot *s = slot_of(h, c->rank);
    s->joined = 0;
    s->state = state;
    int last = --h->refs == 0;
    hdr_unlock(h);
    if (last) shm_unlink(c->name);
    munmap(h, c->map_size);
    c->hdr = NULL;
}

static void comm_free(struct ncclComm *c) {
    comm_detach(c, S_LEFT);
    c->magic = 0;
    free(c);
}

/* Maps the communicator's segment and registers this rank in it (no waiting for the others). */
static ncclResult_t comm_join(struct ncclComm **out, int nranks, uint64_t id, int rank, int device,
                              int blocking) {
    struct ncclComm *c = calloc(1, sizeof *c);
    if (!c) return ncclSystemError;
    c->magic = COMM_MAGIC;
    c->rank = rank;
    c->nranks = nranks;
    c->device = device;
    c->id = id;
    c->blocking = blocking;
    shm_name(c->name, sizeof c->name, id);
    ncclResult_t r = shm_attach(c->name, nranks, init_deadline_after(now_ns()), &c->hdr, &c->map_size);
    if (r != ncclSuccess) {
        free(c);
        return r;
    }
    struct shm_hdr *h = c->hdr;
    hdr_lock(h);
    if (h->nranks != nranks) r = ncclInvalidArgument;
    else if (slot_of(h, rank)->joined) r = ncclInvalidUsage;
    else {
        struct slot *s = slot_of(h, rank);
        s->joined = 1;
        s->pid = getpid();
        s->device = device;
        s->state = S_IDLE;
        s->entered = 0;
        h->refs++;
    }
    int orphan = r != ncclSuccess && h->refs == 0;
    hdr_unlock(h);
    if (r != ncclSuccess) {
        if (orphan) shm_unlink(c->name);
        warn("ncclCommInitRank: rank %d of %d: %s", rank, nranks,
             r == ncclInvalidArgument ? "nranks differs from the other ranks'" : "rank already joined");
        munmap(h, c->map_size);
        free(c);
        return r;
    }
    *out = c;
    return ncclSuccess;
}

/* ---------------------------------------------------------------- barrier */

static void barrier_arrive(struct ncclComm *c, uint32_t *my_gen) {
    struct shm_hdr *h = c->hdr;
    hdr_lock(h);
    *my_gen = h->gen;
    if (++h->count == h->nranks) {
        h->count = 0;
        __atomic_store_n(&h->gen, h->gen + 1, __ATOMIC_RELEASE);
        hdr_unlock(h);
        futex_wake(&h->gen);
        return;
    }
    hdr_unlock(h);
}

static int barrier_passed(struct ncclComm *c, uint32_t my_gen) {
    return __atomic_load_n(&c->hdr->gen, __ATOMIC_ACQUIRE) != my_gen;
}

/* Withdraws from a barrier that has not completed; returns 1 if it had completed after all. */
static int barrier_withdraw(struct ncclComm *c, uint32_t my_gen) {
    struct shm_hdr *h = c->hdr;
    hdr_lock(h);
    int passed = h->gen != my_gen;
    if (!passed) h->count--;
    hdr_unlock(h);
    return passed;
}

/* ---------------------------------------------------------------- operations */

enum kind { K_INIT, K_COLL, K_SEND, K_RECV };
enum phase { P_START, P_B1, P_B2, P_HANG };

struct op {
    int kind, coll;
    struct ncclComm *comm;
    const char *send;
    char *recv;
    size_t count;
    int dtype, redop, root, peer;
    hipStream_t stream;
    uint64_t seq;
    /* progress */
    int started, done, phase;
    uint32_t my_gen;
    size_t off, n;   /* elements done, elements in the current round */
    int any;         /* p2p: a message was moved (zero-byte messages count) */
    int64_t deadline;
    uint32_t *wait_addr, wait_val;
    ncclResult_t result;
};

static size_t per_round(const struct op *o) {
    size_t e = type_size(o->dtype), cap = o->comm->hdr->coll_cap;
    if (o->coll == C_REDUCESCATTER || o->coll == C_ALLTOALL) return cap / (e * (size_t)o->comm->nranks);
    return cap / e;
}

static void missing_ranks(struct ncclComm *c, uint64_t entered, char *buf, size_t len) {
    struct shm_hdr *h = c->hdr;
    size_t used = 0;
    buf[0] = '\0';
    for (int r = 0; r < c->nranks && used + 16 < len; r++) {
        struct slot *s = slot_of(h, r);
        if (entered == 0 ? !s->joined : __atomic_load_n(&s->entered, __ATOMIC_RELAXED) < entered)
            used += (size_t)snprintf(buf + used, len - used, "%s%d", used ? " " : "", r);
    }
    if (!used) snprintf(buf, len, "none (mismatch)");
}

static void op_fail(struct op *o, ncclResult_t r) {
    o->result = r;
    o->done = 1;
    if (r == TIMEOUT_ERROR) set_comm_error(o->comm, r);
}

static void op_timeout(struct op *o, const char *what) {
    struct ncclComm *c = o->comm;
    char miss[256];
    long ms = env_long("STANDIN_RCCL_TIMEOUT_MS", 10000);
    if (o->kind == K_INIT) {
        missing_ranks(c, 0, miss, sizeof miss);
        warn("rank %d/%d timed out after %ld ms in ncclCommInitRank (comm %016llx); ranks not "
             "joined: %s", c->rank, c->nranks, ms, (unsigned long long)c->id, miss);
    } else if (o->kind == K_COLL) {
        missing_ranks(c, o->seq + 1, miss, sizeof miss);
        warn("rank %d/%d timed out after %ld ms in %s (collective #%llu, %s) on comm %016llx; "
             "ranks not there: %s",
             c->rank, c->nranks, ms, coll_names[o->coll], (unsigned long long)o->seq, what,
             (unsigned long long)c->id, miss);
        slot_of(c->hdr, c->rank)->state = S_TIMEDOUT;
    } else {
        warn("rank %d/%d timed out after %ld ms in nccl%s with peer %d on comm %016llx", c->rank,
             c->nranks, ms, o->kind == K_SEND ? "Send" : "Recv", o->peer,
             (unsigned long long)c->id);
    }
    op_fail(o, TIMEOUT_ERROR);
}

static int same_desc(const struct desc *a, const struct desc *b) {
    return a->coll == b->coll && a->dtype == b->dtype && a->redop == b->redop &&
           a->root == b->root && a->count == b->count && a->seq == b->seq;
}

static void coll_write(struct op *o) {
    struct ncclComm *c = o->comm;
    struct shm_hdr *h = c->hdr;
    size_t e = type_size(o->dtype), total = o->count, per = per_round(o);
    o->n = total - o->off < per ? total - o->off : per;
    char *mine = coll_data(h, c->rank);
    size_t bytes = o->n * e;
    switch (o->coll) {
    case C_ALLREDUCE: case C_REDUCE: case C_ALLGATHER: case C_SPLIT:
        if (bytes) memcpy(mine, o->send + o->off * e, bytes);
        break;
    case C_BROADCAST:
        if (c->rank == o->root && bytes) memcpy(mine, o->send + o->off * e, bytes);
        break;
    case C_REDUCESCATTER: case C_ALLTOALL:
        for (int b = 0; b < c->nranks && bytes; b++)
            memcpy(mine + (size_t)b * bytes, o->send + ((size_t)b * o->count + o->off) * e, bytes);
        break;
    }
}

static void coll_read(struct op *o) {
    struct ncclComm *c = o->comm;
    struct shm_hdr *h = c->hdr;
    int nr = c->nranks, me = c->rank;
    size_t e = type_size(o->dtype), bytes = o->n * e;
    const void *src[nr];
    if (!bytes) return;
    switch (o->coll) {
    case C_ALLREDUCE:
    case C_REDUCE:
        if (o->coll == C_REDUCE && me != o->root) break;
        for (int r = 0; r < nr; r++) src[r] = coll_data(h, r);
        reduce(o->dtype, o->redop, o->recv + o->off * e, src, nr, o->n);
        break;
    case C_BROADCAST:
        memmove(o->recv + o->off * e, coll_data(h, o->root), bytes);
        break;
    case C_ALLGATHER: case C_SPLIT:
        for (int r = 0; r < nr; r++)
            memmove(o->recv + ((size_t)r * o->count + o->off) * e, coll_data(h, r), bytes);
        break;
    case C_REDUCESCATTER:
        for (int r = 0; r < nr; r++) src[r] = coll_data(h, r) + (size_t)me * bytes;
        reduce(o->dtype, o->redop, o->recv + o->off * e, src, nr, o->n);
        break;
    case C_ALLTOALL:
        for (int r = 0; r < nr; r++)
            memmove(o->recv + ((size_t)r * o->count + o->off) * e, coll_data(h, r) + (size_t)me * bytes, bytes);
        break;
    }
}

/* Advances a collective or init; returns 1 if it made progress. */
static int step_coll(struct op *o, int64_t now) {
    struct ncclComm *c = o->comm;
    struct shm_hdr *h = c->hdr;
    switch (o->phase) {
    case P_START: {
        if (o->kind == K_COLL) {
            struct slot *s = slot_of(h, c->rank);
            if (o->off == 0) {
                s->desc = (struct desc){o->coll, o->dtype, o->redop, o->root, o->count, o->seq};
                s->state = S_COLL;
                __atomic_store_n(&s->entered, o->seq + 1, __ATOMIC_RELAXED);
            }
            coll_write(o);
        }
        barrier_arrive(c, &o->my_gen);
        o->phase = P_B1;
        o->deadline = o->kind == K_INIT ? init_deadline_after(now) : deadline_after(now);
        return 1;
    }
    case P_B1:
    case P_B2:
        if (!barrier_passed(c, o->my_gen)) {
            if (now > o->deadline) {
                if (!barrier_withdraw(c, o->my_gen)) {
                    op_timeout(o, o->phase == P_B1 ? "waiting for the ranks to arrive"
                                                   : "waiting for the ranks to read");
                    return 1;
                }
            } else {
                o->wait_addr = &h->gen;
                o->wait_val = o->my_gen;
                return 0;
            }
        }
        o->deadline = o->kind == K_INIT ? init_deadline_after(now) : deadline_after(now);
        if (o->kind == K_INIT) {
            o->done = 1;
            return 1;
        }
        if (o->phase == P_B1) {
            if (o->off == 0) {
                struct slot *mine = slot_of(h, c->rank);
                for (int r = 0; r < c->nranks; r++) {
                    struct slot *s = slot_of(h, r);
                    if (!same_desc(&s->desc, &mine->desc)) {
                        warn("rank %d: collective #%llu is %s count %llu type %d here but %s count "
                             "%llu type %d on rank %d: hanging like a mismatched collective",
                             c->rank, (unsigned long long)o->seq, coll_names[o->coll],
                             (unsigned long long)o->count, o->dtype, coll_names[s->desc.coll],
                             (unsigned long long)s->desc.count, s->desc.dtype, r);
                        o->phase = P_HANG;
                        return 1;
                    }
                }
            }
            coll_read(o);
            barrier_arrive(c, &o->my_gen);
            o->phase = P_B2;
            return 1;
        }
        /* P_B2 passed: the round is complete. */
        o->off += o->n;
        if (o->off >= o->count) {
            slot_of(h, c->rank)->state = S_IDLE;
            o->done = 1;
        } else {
            o->phase = P_START;
        }
        return 1;
    case P_HANG:
        if (now > o->deadline) {
            op_timeout(o, "mismatched collective");
            return 1;
        }
        o->wait_addr = &h->gen;
        o->wait_val = __atomic_load_n(&h->gen, __ATOMIC_RELAXED);
        return 0;
    }
    return 0;
}

static int step_p2p(struct op *o, int64_t now) {
    struct ncclComm *c = o->comm;
    struct shm_hdr *h = c->hdr;
    size_t total = o->count * type_size(o->dtype), cap = h->p2p_cap;
    if (o->phase == P_START) {
        o->phase = P_B1;
        o->deadline = o->kind == K_INIT ? init_deadline_after(now) : deadline_after(now);
    }
    if (o->kind == K_SEND) {
        struct chan *ch = chan_of(h, c->rank, o->peer);
        uint32_t posted = __atomic_load_n(&ch->posted, __ATOMIC_ACQUIRE);
        uint32_t acked = __atomic_load_n(&ch->acked, __ATOMIC_ACQUIRE);
        if (posted == acked) {
            size_t n = total - o->off < cap ? total - o->off : cap;
            if (n) memcpy(p2p_data(h, c->rank, o->peer), o->send + o->off, n);
            ch->bytes = n;
            __atomic_store_n(&ch->posted, posted + 1, __ATOMIC_RELEASE);
            futex_wake(&ch->posted);
            o->off += n;
            o->any = 1;
            o->deadline = o->kind == K_INIT ? init_deadline_after(now) : deadline_after(now);
            if (o->off >= total) o->done = 1;
            return 1;
        }
        o->wait_addr = &ch->acked;
        o->wait_val = acked;
    } else {
        struct chan *ch = chan_of(h, o->peer, c->rank);
        uint32_t posted = __atomic_load_n(&ch->posted, __ATOMIC_ACQUIRE);
        uint32_t acked = __atomic_load_n(&ch->acked, __ATOMIC_ACQUIRE);
        if (posted != acked) {
            size_t n = ch->bytes, room = total - o->off;
            if (n > room) n = room; /* a longer message than expected is truncated */
            if (n) memcpy(o->recv + o->off, p2p_data(h, o->peer, c->rank), n);
            __atomic_store_n(&ch->acked, acked + 1, __ATOMIC_RELEASE);
            futex_wake(&ch->acked);
            o->off += n;
            o->any = 1;
            o->deadline = o->kind == K_INIT ? init_deadline_after(now) : deadline_after(now);
            if (o->off >= total) o->done = 1;
            return 1;
        }
        o->wait_addr = &ch->posted;
        o->wait_val = posted;
    }
    if (now > o->deadline) {
        op_timeout(o, "");
        return 1;
    }
    return 0;
}

static int step(struct op *o) {
    struct ncclComm *c = o->comm;
    int64_t now = now_ns();
    o->wait_addr = NULL;
    if (__atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE)) { /* ncclCommAbort: the wait ends */
        o->result = comm_error(c);
        o->done = 1;
        return 1;
    }
    if (!o->started) {
        o->started = 1;
        if (c->hdr == NULL) { op_fail(o, comm_error(c) ? comm_error(c) : ncclInvalidUsage); return 1; }
        /* A communicator with an error (a timeout) drops its later work. */
        if (o->kind != K_INIT && comm_error(c) != ncclSuccess) { op_fail(o, comm_error(c)); return 1; }
    }
    if (o->kind == K_SEND || o->kind == K_RECV) return step_p2p(o, now);
    return step_coll(o, now);
}

/* Ops on one communicator keep their order: collectives after earlier collectives, sends or
 * receives after earlier ones with the same peer, everything after the communicator's init. */
static int blocked(const struct op *ops, int i) {
    const struct op *o = &ops[i];
    for (int j = 0; j < i; j++) {
        const struct op *p = &ops[j];
        if (p->done || p->comm != o->comm) continue;
        if (p->kind == K_INIT) return 1;
        if (o->kind == K_COLL && p->kind == K_COLL) return 1;
        if ((o->kind == K_SEND || o->kind == K_RECV) && p->kind == o->kind && p->peer == o->peer)
            return 1;
    }
    return 0;
}

/* Runs ops to completion (or error), interleaving them so that one thread can drive several
 * ranks (ncclCommInitAll + groups) and exchanging sends/receives do not deadlock. */
static ncclResult_t run_ops(struct op *ops, int n) {
    for (;;) {
        int pending = 0, progressed = 0;
        struct op *waiter = NULL;
        for (int i = 0; i < n; i++) {
            if (ops[i].done) continue;
            if (!blocked(ops, i)) progressed |= step(&ops[i]);
            if (!ops[i].done) {
                pending++;
                if (!waiter && ops[i].wait_addr) waiter = &ops[i];
            }
        }
        if (!pending) break;
        if (progressed) continue;
        if (waiter) {
            /* Bounded, so that an abort is seen within 50 ms. */
            int64_t ns = pending > 1 ? 1000000 : 50000000;
            int64_t left = waiter->deadline - now_ns();
            if (left < ns) ns = left > 0 ? left : 0;
            futex_wait(waiter->wait_addr, waiter->wait_val, ns + 1000);
        } else {
            usleep(100);
        }
    }
    for (int i = 0; i < n; i++)
        if (ops[i].result != ncclSuccess) return ops[i].result;
    return ncclSuccess;
}

/* ---------------------------------------------------------------- groups */

static __thread int group_depth;
static __thread struct op *group_ops;
static __thread int group_n, group_cap;
static __thread ncclResult_t group_error;

/* ---------------------------------------------------------------- queued items */

/* qlock guards the communicators' issued/turn and the items' arrival counts; enq_lock makes
 * numbering an item and queueing it on its streams one step, so that items reach every stream
 * in the order of their numbers (workers never take it). */
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t enq_lock = PTHREAD_MUTEX_INITIALIZER;

struct ticket {
    struct ncclComm *comm;
    uint64_t n; /* runs when comm->turn == n */
};

/* A call's (or a group's) operations, queued on each of their streams: the last stream to
 * reach it runs the operations on its worker; the others wait there until they are done. */
struct item {
    int nops, nstreams, ncomms;
    int arrived, finished, left;
    struct op *ops;          /* owned copies */
    struct ticket *tickets; /* one per communicator */
};

/* Runs on a HIP stream's worker (standin_hip_enqueue). */
static void item_run(void *arg) {
    struct item *it = arg;
    pthread_mutex_lock(&qlock);
    if (++it->arrived < it->nstreams) {
        while (!it->finished) pthread_cond_wait(&qcond, &qlock);
    } else {
        for (int i = 0; i < it->ncomms; i++)
            while (it->tickets[i].comm->turn != it->tickets[i].n)
                pthread_cond_wait(&qcond, &qlock);
        pthread_mutex_unlock(&qlock);
        run_ops(it->ops, it->nops);
        pthread_mutex_lock(&qlock);
        int detach[it->ncomms];
        for (int i = 0; i < it->ncomms; i++) {
            struct ncclComm *c = it->tickets[i].comm;
            c->turn++;
            /* An aborted communicator leaves its segment once its last item is done. */
            detach[i] = c->aborted && c->turn == c->issued && c->hdr != NULL;
        }
        it->finished = 1;
        pthread_cond_broadcast(&qcond);
        pthread_mutex_unlock(&qlock);
        for (int i = 0; i < it->ncomms; i++)
            if (detach[i]) comm_detach(it->tickets[i].comm, S_LEFT);
        pthread_mutex_lock(&qlock);
    }
    int last = ++it->left == it->nstreams;
    pthread_mutex_unlock(&qlock);
    if (last) {
        free(it->ops);
        free(it->tickets);
        free(it);
    }
}

/* Queues ops (copied) as one item on their streams and returns at once. */
static ncclResult_t enqueue_ops(const struct op *ops, int n) {
    struct item *it = calloc(1, sizeof *it);
    hipStream_t *streams = calloc((size_t)n, sizeof *streams);
    if (it) {
        it->ops = malloc(sizeof *ops * (size_t)n);
        it->tickets = calloc((size_t)n, sizeof *it->tickets);
    }
    if (!it || !streams || !it->ops || !it->tickets) {
        if (it) {
            free(it->ops);
            free(it->tickets);
        }
        free(it);
        free(streams);
        return ncclSystemError;
    }
    memcpy(it->ops, ops, sizeof *ops * (size_t)n);
    it->nops = n;
    for (int i = 0; i < n; i++) {
        int j;
        for (j = 0; j < it->nstreams && streams[j] != ops[i].stream; j++) {}
        if (j == it->nstreams) streams[it->nstreams++] = ops[i].stream;
        for (j = 0; j < it->ncomms && it->tickets[j].comm != ops[i].comm; j++) {}
        if (j == it->ncomms) it->tickets[it->ncomms++].comm = ops[i].comm;
    }
    int nstreams = it->nstreams;
    pthread_mutex_lock(&enq_lock);
    pthread_mutex_lock(&qlock);
    for (int i = 0; i < it->ncomms; i++) it->tickets[i].n = it->tickets[i].comm->issued++;
    pthread_mutex_unlock(&qlock);
    ncclResult_t r = ncclSuccess;
    for (int i = 0; i < nstreams; i++) {
        if (standin_hip_enqueue(streams[i], item_run, it) == hipSuccess) continue;
        if (i == 0) { /* nothing queued: take the numbers back (enq_lock: no one took more) */
            pthread_mutex_lock(&qlock);
            for (int k = 0; k < it->ncomms; k++) it->tickets[k].comm->issued--;
            pthread_mutex_unlock(&qlock);
            warn("invalid stream %p", (void *)streams[i]);
            free(it->ops);
            free(it->tickets);
            free(it);
            r = ncclUnhandledCudaError;
            break;
        }
        /* A stream destroyed since the call checked it: its share goes to the null stream. */
        standin_hip_enqueue(NULL, item_run, it);
    }
    pthread_mutex_unlock(&enq_lock);
    free(streams);
    return r;
}

/* Waits until the communicator's queued items are done (before host-side use of its segment). */
static void wait_idle(struct ncclComm *c) {
    pthread_mutex_lock(&qlock);
    while (c->turn != c->issued) pthread_cond_wait(&qcond, &qlock);
    pthread_mutex_unlock(&qlock);
}

/* Whether `stream` is one the HIP stand-in accepts (asked privately: no traced hip call). */
static int stream_ok(hipStream_t stream) { return standin_hip_enqueue(stream, NULL, NULL) == hipSuccess; }

static ncclResult_t submit(struct op *o) {
    if (group_depth > 0) {
        if (group_n == group_cap) {
            int cap = group_cap ? group_cap * 2 : 16;
            struct op *p = realloc(group_ops, sizeof *p * (size_t)cap);
            if (!p) return group_error = ncclSystemError;
            group_ops = p;
            group_cap = cap;
        }
        group_ops[group_n++] = *o;
        return ncclSuccess;
    }
    if (sync_mode()) return run_ops(o, 1);
    return enqueue_ops(o, 1);
}

static ncclResult_t fail_call(ncclResult_t r) {
    if (group_depth > 0 && group_error == ncclSuccess) group_error = r;
    return r;
}

/* ---------------------------------------------------------------- init */

static int config_blocking(const ncclConfig_t *config, ncclResult_t *r) {
    *r = ncclSuccess;
    if (!config) return 1;
    if (config->magic != CONFIG_MAGIC) {
        warn("ncclConfig_t not initialised with NCCL_CONFIG_INITIALIZER (magic %#x)", config->magic);
        *r = ncclInvalidArgument;
        return 1;
    }
    if (config->size >= offsetof(ncclConfig_t, blocking) + sizeof(int) &&
        config->blocking != NCCL_CONFIG_UNDEF_INT)
        return config->blocking != 0;
    return 1;
}

static ncclResult_t init_rank_dev(ncclComm_t *newcomm, int nranks, uint64_t id, int rank, int dev,
                                  ncclConfig_t *config) {
    ncclResult_t r;
    if (newcomm == NULL) return fail_call(ncclInvalidArgument);
    *newcomm = NULL;
    int blocking = config_blocking(config, &r);
    if (r != ncclSuccess) return fail_call(r);
    if (nranks < 1 || rank < 0 || rank >= nranks) {
        warn("ncclCommInitRank: invalid rank %d / nranks %d", rank, nranks);
        return fail_call(ncclInvalidArgument);
    }
    if (id == 0) {
        warn("ncclCommInitRank: unique id is not initialised");
        return fail_call(ncclInvalidArgument);
    }
    struct ncclComm *c;
    r = comm_join(&c, nranks, id, rank, dev, blocking);
    if (r != ncclSuccess) return fail_call(r);
    struct op o = {.kind = K_INIT, .comm = c};
    if (group_depth > 0) {
        *newcomm = c; /* usable after ncclGroupEnd */
        return submit(&o);
    }
    r = run_ops(&o, 1);
    if (r != ncclSuccess) {
        comm_free(c);
        return r;
    }
    *newcomm = c;
    return ncclSuccess;
}

static uint64_t id_magic(const ncclUniqueId *id) {
    uint64_t m;
    memcpy(&m, id->internal, sizeof m);
    return m;
}

/* Its version as text, as RCCL carries it ("RCCL version 2.13.4+hip5.7"): the rccl pack reads
 * it (`version_from`) to choose the probes of this API version. */
#define STR2(x) #x
#define STR(x) STR2(x)
__attribute__((used)) const char rccl_standin_version[] =
    "RCCL version " STR(NCCL_MAJOR) "." STR(NCCL_MINOR) "." STR(NCCL_PATCH) "+standin";

API ncclResult_t ncclGetVersion(int *version) {
    if (version == NULL) return ncclInvalidArgument;
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

API ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId) {
    if (uniqueId == NULL) return ncclInvalidArgument;
    memset(uniqueId, 0, sizeof *uniqueId);
    /* struct ncclBootstrapHandle { uint64_t magic; union ncclSocketAddress addr; } */
    uint64_t magic = 0;
    while (magic == 0)
        if (getrandom(&magic, sizeof magic, 0) != sizeof magic) magic = mix64((uint64_t)now_ns() ^ (uint64_t)getpid());
    memcpy(uniqueId->internal, &magic, sizeof magic);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)(32768 + magic % 28232)),
                               .sin_addr = {htonl(INADDR_LOOPBACK)}};
    memcpy(uniqueId->internal + sizeof magic, &addr, sizeof addr);
    return ncclSuccess;
}

API ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank,
                                        ncclConfig_t *config) {
    int dev;
    if (hipGetDevice(&dev) != hipSuccess) return fail_call(ncclUnhandledCudaError);
    return init_rank_dev(comm, nranks, id_magic(&commId), rank, dev, config);
}

API ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank) {
    int dev;
    if (hipGetDevice(&dev) != hipSuccess) return fail_call(ncclUnhandledCudaError);
    return init_rank_dev(comm, nranks, id_magic(&commId), rank, dev, NULL);
}

API ncclResult_t ncclCommInitAll(ncclComm_t *comm, int ndev, const int *devlist) {
    if (comm == NULL || ndev < 1) return ncclInvalidArgument;
    int total;
    if (hipGetDeviceCount(&total) != hipSuccess) return ncclUnhandledCudaError;
    if (devlist) {
        for (int i = 0; i < ndev; i++) {
            if (devlist[i] < 0 || devlist[i] >= total) return ncclInvalidArgument;
            for (int j = 0; j < i; j++)
                if (devlist[j] == devlist[i]) return ncclInvalidUsage;
        }
    }
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) return r;
    ncclGroupStart();
    for (int i = 0; i < ndev; i++)
        init_rank_dev(comm + i, ndev, id_magic(&id), i, devlist ? devlist[i] : i, NULL);
    r = ncclGroupEnd();
    if (r != ncclSuccess) {
        for (int i = 0; i < ndev; i++) {
            if (comm[i]) comm_free(comm[i]);
            comm[i] = NULL;
        }
    }
    return r;
}

/* ---------------------------------------------------------------- communicator queries */

/* Waits for the communicator's queued work (forever if it hangs), then leaves it. */
API ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (comm == NULL) return ncclSuccess;
    if (!valid_comm(comm)) return ncclInvalidArgument;
    wait_idle(comm);
    comm_free(comm);
    return ncclSuccess;
}

/* Returns at once: the communicator's running and queued work ends (the streams go on), its
 * segment is left once no item of it runs, and the handle stays readable by
 * ncclCommGetAsyncError only (sync mode: freed, as before). */
API ncclResult_t ncclCommAbort(ncclComm_t comm) {
    if (comm == NULL) return ncclSuccess;
    if (!valid_comm(comm)) return ncclInvalidArgument;
    if (sync_mode()) {
        comm_free(comm);
        return ncclSuccess;
    }
    set_comm_error(comm, ncclSystemError);
    pthread_mutex_lock(&qlock);
    comm->magic = ABORTED_MAGIC;
    __atomic_store_n(&comm->aborted, 1, __ATOMIC_RELEASE);
    int idle = comm->turn == comm->issued;
    pthread_cond_broadcast(&qcond);
    pthread_mutex_unlock(&qlock);
    if (idle) comm_detach(comm, S_LEFT);
    return ncclSuccess;
}

API ncclResult_t ncclCommCount(const ncclComm_t comm, int *count) {
    if (!valid_comm(comm) || count == NULL) return ncclInvalidArgument;
    *count = comm->nranks;
    return ncclSuccess;
}

API ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int *device) {
    if (!valid_comm(comm) || device == NULL) return ncclInvalidArgument;
    *device = comm->device;
    return ncclSuccess;
}

API ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank) {
    if (!valid_comm(comm) || rank == NULL) return ncclInvalidArgument;
    *rank = comm->rank;
    return ncclSuccess;
}

API ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError) {
    if (comm == NULL || (comm->magic != COMM_MAGIC && comm->magic != ABORTED_MAGIC) ||
        asyncError == NULL)
        return ncclInvalidArgument;
    *asyncError = comm_error(comm);
    return ncclSuccess;
}

API const char *ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

API const char *ncclGetLastError(ncclComm_t comm) {
    (void)comm;
    return last_error;
}

/* ---------------------------------------------------------------- groups (API) */

API ncclResult_t ncclGroupStart(void) {
    if (group_depth++ == 0) {
        group_n = 0;
        group_error = ncclSuccess;
    }
    return ncclSuccess;
}

API ncclResult_t ncclGroupEnd(void) {
    if (group_depth == 0) {
        warn("ncclGroupEnd without ncclGroupStart");
        return ncclInvalidUsage;
    }
    if (--group_depth > 0) return ncclSuccess;
    ncclResult_t r = group_error;
    int has_init = 0;
    for (int i = 0; i < group_n; i++) has_init |= group_ops[i].kind == K_INIT;
    if (r == ncclSuccess && (has_init || sync_mode())) {
        /* Inits are synchronous: the group runs here, after the other communicators' queued
         * work. */
        for (int i = 0; i < group_n; i++)
            if (group_ops[i].kind != K_INIT) wait_idle(group_ops[i].comm);
        r = run_ops(group_ops, group_n);
    } else if (r == ncclSuccess && group_n > 0) {
        r = enqueue_ops(group_ops, group_n);
    } else if (r != ncclSuccess) /* a call of the group failed: the group is not run */
        for (int i = 0; i < group_n; i++) group_ops[i].result = r;
    /* A communicator whose init failed keeps the error; its handle must still be destroyed. */
    for (int i = 0; i < group_n; i++)
        if (group_ops[i].kind == K_INIT && group_ops[i].result != ncclSuccess) {
            group_ops[i].comm->error = group_ops[i].result;
            comm_detach(group_ops[i].comm, S_TIMEDOUT);
        }
    free(group_ops);
    group_ops = NULL;
    group_n = group_cap = 0;
    group_error = ncclSuccess;
    return r;
}

/* ---------------------------------------------------------------- collectives */

static ncclResult_t collective(int coll, const void *sendbuff, void *recvbuff, size_t count,
                               ncclDataType_t datatype, ncclRedOp_t op, int root, ncclComm_t comm,
                               hipStream_t stream) {
    if (!valid_comm(comm)) return fail_call(ncclInvalidArgument);
    if (comm->hdr == NULL) return fail_call(comm_error(comm) ? comm_error(comm) : ncclInvalidUsage);
    if (comm_error(comm) != ncclSuccess) return fail_call(comm_error(comm));
    if (!sync_mode() && !stream_ok(stream)) {
        warn("%s: invalid stream %p", coll_names[coll], (void *)stream);
        return fail_call(ncclUnhandledCudaError);
    }
    if (type_size(datatype) == 0) {
        warn("%s: invalid data type %d", coll_names[coll], (int)datatype);
        return fail_call(ncclInvalidArgument);
    }
    int reduces = coll == C_ALLREDUCE || coll == C_REDUCE || coll == C_REDUCESCATTER;
    if (reduces && ((int)op < 0 || op >= ncclNumOps)) {
        warn("%s: invalid reduction operation %d", coll_names[coll], (int)op);
        return fail_call(ncclInvalidArgument);
    }
    int rooted = coll == C_BROADCAST || coll == C_REDUCE;
    if (rooted && (root < 0 || root >= comm->nranks)) {
        warn("%s: invalid root %d", coll_names[coll], root);
        return fail_call(ncclInvalidArgument);
    }
    int me = comm->rank;
    int need_send = coll != C_BROADCAST || me == root;
    int need_recv = coll != C_REDUCE || me == root;
    if (count > 0 && ((need_send && sendbuff == NULL) || (need_recv && recvbuff == NULL))) {
        warn("%s: NULL buffer", coll_names[coll]);
        return fail_call(ncclInvalidArgument);
    }
    struct op o = {.kind = K_COLL,
                   .coll = coll,
                   .comm = comm,
                   .send = sendbuff,
                   .recv = recvbuff,
                   .count = count,
                   .dtype = datatype,
                   .redop = reduces ? (int)op : -1,
                   .root = rooted ? root : -1,
                   .peer = -1,
                   .stream = stream,
                   .seq = comm->seq++};
    return submit(&o);
}

static ncclResult_t p2p(int kind, const void *sendbuff, void *recvbuff, size_t count,
                        ncclDataType_t datatype, int peer, ncclComm_t comm, hipStream_t stream) {
    if (!valid_comm(comm)) return fail_call(ncclInvalidArgument);
    if (comm->hdr == NULL) return fail_call(comm_error(comm) ? comm_error(comm) : ncclInvalidUsage);
    if (comm_error(comm) != ncclSuccess) return fail_call(comm_error(comm));
    if (!sync_mode() && !stream_ok(stream)) {
        warn("nccl%s: invalid stream %p", kind == K_SEND ? "Send" : "Recv", (void *)stream);
        return fail_call(ncclUnhandledCudaError);
    }
    if (type_size(datatype) == 0 || peer < 0 || peer >= comm->nranks) {
        warn("nccl%s: invalid data type %d or peer %d", kind == K_SEND ? "Send" : "Recv",
             (int)datatype, peer);
        return fail_call(ncclInvalidArgument);
    }
    if (count > 0 && ((kind == K_SEND && !sendbuff) || (kind == K_RECV && !recvbuff)))
        return fail_call(ncclInvalidArgument);
    struct op o = {.kind = kind,
                   .comm = comm,
                   .send = sendbuff,
                   .recv = recvbuff,
                   .count = count,
                   .dtype = datatype,
                   .redop = -1,
                   .root = -1,
                   .peer = peer,
                   .stream = stream};
    return submit(&o);
}

API ncclResult_t ncclReduce(const void *sendbuff, void *recvbuff, size_t count,
                            ncclDataType_t datatype, ncclRedOp_t op, int root, ncclComm_t comm,
                            hipStream_t stream) {
    return collective(C_REDUCE, sendbuff, recvbuff, count, datatype, op, root, comm, stream);
}

API ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count,
                               ncclDataType_t datatype, int root, ncclComm_t comm,
                               hipStream_t stream) {
    return collective(C_BROADCAST, sendbuff, recvbuff, count, datatype, ncclSum, root, comm, stream);
}

/* Like NCCL, the deprecated in-place broadcast calls ncclBroadcast. */
API ncclResult_t ncclBcast(void *buff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, hipStream_t stream) {
    return ncclBroadcast(buff, buff, count, datatype, root, comm, stream);
}

API ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                               ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                               hipStream_t stream) {
    return collective(C_ALLREDUCE, sendbuff, recvbuff, count, datatype, op, 0, comm, stream);
}

API ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount,
                                   ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                                   hipStream_t stream) {
    return collective(C_REDUCESCATTER, sendbuff, recvbuff, recvcount, datatype, op, 0, comm, stream);
}

API ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount,
                               ncclDataType_t datatype, ncclComm_t comm, hipStream_t stream) {
    return collective(C_ALLGATHER, sendbuff, recvbuff, sendcount, datatype, ncclSum, 0, comm, stream);
}

API ncclResult_t ncclAllToAll(const void *sendbuff, void *recvbuff, size_t count,
                              ncclDataType_t datatype, ncclComm_t comm, hipStream_t stream) {
    return collective(C_ALLTOALL, sendbuff, recvbuff, count, datatype, ncclSum, 0, comm, stream);
}

API ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t datatype, int peer,
                          ncclComm_t comm, hipStream_t stream) {
    return p2p(K_SEND, sendbuff, NULL, count, datatype, peer, comm, stream);
}

API ncclResult_t ncclRecv(void *recvbuff, size_t count, ncclDataType_t datatype, int peer,
                          ncclComm_t comm, hipStream_t stream) {
    return p2p(K_RECV, NULL, recvbuff, count, datatype, peer, comm, stream);
}

/* ---------------------------------------------------------------- split */

struct split_key {
    int key, rank;
};

static int cmp_split(const void *a, const void *b) {
    const struct split_key *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

API ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t *newcomm,
                               ncclConfig_t *config) {
    ncclResult_t r;
    if (!valid_comm(comm) || newcomm == NULL) return fail_call(ncclInvalidArgument);
    /* Synchronous, after the parent's queued work. */
    wait_idle(comm);
    if (comm->hdr == NULL) return fail_call(comm_error(comm) ? comm_error(comm) : ncclInvalidUsage);
    if (comm_error(comm) != ncclSuccess) return fail_call(comm_error(comm));
    *newcomm = NULL;
    config_blocking(config, &r);
    if (r != ncclSuccess) return fail_call(r);
    if (color < 0 && color != NCCL_SPLIT_NOCOLOR) return fail_call(ncclInvalidArgument);
    int n = comm->nranks;
    int mine[2] = {color, key};
    int *all = calloc((size_t)n * 2, sizeof *all);
    if (!all) return ncclSystemError;
    /* The (color, key) exchange is a collective on the parent; it runs now, even in a group. */
    struct op o = {.kind = K_COLL, .coll = C_SPLIT, .comm = comm, .send = (const char *)mine,
                   .recv = (char *)all, .count = 2, .dtype = ncclInt32, .redop = -1, .root = -1,
                   .peer = -1, .seq = comm->seq++};
    r = run_ops(&o, 1);
    uint32_t split = comm->splits++;
    if (r != ncclSuccess) {
        free(all);
        return fail_call(r);
    }
    if (color == NCCL_SPLIT_NOCOLOR) {
        free(all);
        return ncclSuccess;
    }
    struct split_key *members = calloc((size_t)n, sizeof *members);
    int m = 0, newrank = -1;
    for (int i = 0; i < n; i++)
        if (all[2 * i] == color) members[m++] = (struct split_key){all[2 * i + 1], i};
    qsort(members, (size_t)m, sizeof *members, cmp_split);
    for (int i = 0; i < m; i++)
        if (members[i].rank == comm->rank) newrank = i;
    free(members);
    free(all);
    uint64_t id = mix64(comm->id ^ ((uint64_t)split << 32) ^ (uint32_t)color);
    if (id == 0) id = 1;
    return init_rank_dev(newcomm, m, id, newrank, comm->device, config);
}
