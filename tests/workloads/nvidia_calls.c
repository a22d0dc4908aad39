/* A program on NVIDIA's real CUDA runtime and NCCL (from PyPI's wheels), built against their
 * own headers, for the cuda and nccl packs' end-to-end test. With no GPU (no driver) the CUDA
 * calls return cudaErrorInsufficientDriver (35) and NCCL's fail likewise; every probe still
 * fires. The handles are chosen (a stream 0x5151, an event 0xe1) so that the traces' links
 * have values to join; NCCL calls get a NULL communicator, which NCCL checks before use.
 * Prints each call's result, for the test to compare with the log.
 *
 * The declarations are those of cuda_runtime_api.h (CUDA 12.9) and nccl.h (NCCL 2.32): the
 * runtime wheel's headers need the compiler's (crt/host_defines.h, from nvcc's wheel), so the
 * few used here are repeated, with the headers' types. */
#include <stdio.h>
#include <string.h>
#include <stddef.h>

typedef int cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                      cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
typedef void (*cudaHostFn_t)(void *userData);
typedef void (*cudaStreamCallback_t)(cudaStream_t stream, cudaError_t status, void *userData);
#define CUDART_CB
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaStreamCreate(cudaStream_t *pStream);
cudaError_t cudaMalloc(void **devPtr, size_t size);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void *userData);
cudaError_t cudaStreamAddCallback(cudaStream_t stream, cudaStreamCallback_t callback,
                                  void *userData, unsigned int flags);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);

typedef int ncclResult_t;
typedef struct ncclComm *ncclComm_t;
typedef struct { char internal[128]; } ncclUniqueId;
typedef enum { ncclInt8 = 0, ncclFloat32 = 7 } ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;
ncclResult_t ncclGetVersion(int *version);
ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId);
ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream);
ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count,
                           ncclDataType_t datatype, int root, ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclCommCount(const ncclComm_t comm, int *count);

static void host_fn(void *user) { (void)user; }
static void CUDART_CB stream_cb(cudaStream_t s, cudaError_t status, void *user)
{
    (void)s; (void)status; (void)user;
}

int main(void)
{
    int n = -1;
    printf("cudaGetDeviceCount %d\n", (int)cudaGetDeviceCount(&n));
    printf("cudaSetDevice %d\n", (int)cudaSetDevice(1));
    cudaStream_t created = 0;
    printf("cudaStreamCreate %d\n", (int)cudaStreamCreate(&created));
    cudaStream_t s = (cudaStream_t)0x5151;
    cudaEvent_t ev = (cudaEvent_t)0xe1;
    void *p = NULL;
    printf("cudaMalloc %d\n", (int)cudaMalloc(&p, 1 << 20));
    printf("cudaMemcpyAsync %d\n", (int)cudaMemcpyAsync(p, p, 64, cudaMemcpyDeviceToDevice, s));
    printf("cudaLaunchHostFunc %d\n", (int)cudaLaunchHostFunc(s, host_fn, (void *)0x1234));
    printf("cudaStreamAddCallback %d\n", (int)cudaStreamAddCallback(s, stream_cb, (void *)0x1234, 0));
    printf("cudaEventRecord %d\n", (int)cudaEventRecord(ev, s));
    printf("cudaStreamWaitEvent %d\n", (int)cudaStreamWaitEvent(s, ev, 0));
    printf("cudaStreamSynchronize %d\n", (int)cudaStreamSynchronize(s));

    int version = 0;
    ncclResult_t r = ncclGetVersion(&version);
    printf("ncclGetVersion %d %d\n", (int)r, version);
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    printf("ncclGetUniqueId %d\n", (int)ncclGetUniqueId(&id));
    ncclComm_t comm = NULL;
    printf("ncclAllReduce %d\n",
           (int)ncclAllReduce(p, p, 1024, ncclFloat32, ncclSum, comm, s));
    printf("ncclBroadcast %d\n", (int)ncclBroadcast(p, p, 1024, ncclFloat32, 0, comm, s));
    int count = -1;
    printf("ncclCommCount %d\n", (int)ncclCommCount(comm, &count));
    return 0;
}
