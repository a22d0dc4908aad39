/* The stand-ins' private interface between librccl.so.1 and libamdhip64.so.5 (not HIP API).
 * Real RCCL launches its kernels through HIP internals, so a tracer of the HIP API sees no hip
 * call from inside a collective; the RCCL stand-in likewise queues its work with this entry
 * point instead of a public HIP function. */
#ifndef BTHOST_STANDIN_PRIVATE_H
#define BTHOST_STANDIN_PRIVATE_H

#include "standin_api.h"

/* Queues fn(arg) on `stream` (NULL: the calling thread's current device's null stream, with its
 * ordering) and returns at once; the stream's worker calls fn(arg) when it reaches it, and fn
 * owns arg. hipErrorInvalidHandle for a bad stream. fn == NULL only checks the stream. With
 * $STANDIN_SYNC=1, fn(arg) runs at the call, on the calling thread. Exported as
 * standin_hip_enqueue@hip_4.2 (hip_standin.map). */
hipError_t standin_hip_enqueue(hipStream_t stream, void (*fn)(void *), void *arg);

#endif
