/* A small program on the real HIP runtime (libamdhip64), for the end-to-end tests and the demo.
 * With no GPU every call returns an error, but each one enters the library, so every probe
 * fires. Arguments are distinctive values the tests look for in the decoded log.
 * Prototypes are copied from hip/hip_runtime_api.h (ROCm 5.2) so no HIP headers are needed. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef int hipError_t;
typedef struct ihipStream_t *hipStream_t;
typedef struct dim3 { uint32_t x, y, z; } dim3;
typedef enum hipMemcpyKind {
    hipMemcpyHostToHost = 0, hipMemcpyHostToDevice = 1, hipMemcpyDeviceToHost = 2,
    hipMemcpyDeviceToDevice = 3, hipMemcpyDefault = 4
} hipMemcpyKind;

hipError_t hipGetDeviceCount(int *count);
hipError_t hipSetDevice(int deviceId);
hipError_t hipGetDevice(int *deviceId);
hipError_t hipDeviceSynchronize(void);
hipError_t hipMalloc(void **ptr, size_t size);
hipError_t hipFree(void *ptr);
hipError_t hipMemcpyAsync(void *dst, const void *src, size_t sizeBytes, hipMemcpyKind kind, hipStream_t stream);
hipError_t hipStreamCreate(hipStream_t *stream);
hipError_t hipStreamSynchronize(hipStream_t stream);
hipError_t hipLaunchKernel(const void *function_address, dim3 numBlocks, dim3 dimBlocks, void **args,
                           size_t sharedMemBytes, hipStream_t stream);

/* A "kernel" address: the tests check that hipLaunchKernel's function pointer is this one. */
__attribute__((noinline)) void bthost_demo_kernel(void) { __asm__ volatile(""); }

static int iterations = 1;

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < iterations; i++) {
        hipSetDevice(1);
        hipStreamSynchronize((hipStream_t)0);
        hipDeviceSynchronize();
    }
    return NULL;
}

/* Copies /proc/self/maps to $BTHOST_DUMP_MAPS, as `bthost record` would record it, so that the
 * kernel's address can be symbolized offline. */
static void dump_maps(void) {
    const char *to = getenv("BTHOST_DUMP_MAPS");
    if (!to) return;
    FILE *in = fopen("/proc/self/maps", "r"), *out = fopen(to, "w");
    char buf[4096];
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
}

int main(int argc, char **argv) {
    if (argc > 1) iterations = atoi(argv[1]);
    dump_maps();
    int count = -1;
    hipError_t r = hipGetDeviceCount(&count);
    printf("hipGetDeviceCount -> %d (count %d)\n", r, count);
    for (int i = 0; i < iterations; i++) {
        hipSetDevice(0);
        int dev = -1;
        hipGetDevice(&dev);
        void *p = NULL;
        hipMalloc(&p, 1 << 20);
        hipStream_t s = NULL;
        hipStreamCreate(&s);
        static char host[64];
        hipMemcpyAsync((void *)0x7000, host, sizeof host, hipMemcpyHostToDevice, (hipStream_t)0x5eed);
        dim3 grid = {64, 2, 1}, block = {256, 1, 1};
        void *args[1] = {NULL};
        hipLaunchKernel((const void *)bthost_demo_kernel, grid, block, args, 4096, (hipStream_t)0x5eed);
        hipFree(p);
    }
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    printf("kernel %p\n", (void *)bthost_demo_kernel);
    return 0;
}
