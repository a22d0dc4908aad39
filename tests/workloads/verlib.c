/* A library whose struct layout differs between its releases, as RCCL's ncclComm does (the
 * original tool read comm->cudaDev at an offset valid for one RCCL build only). Built twice
 * by tests/tests/library_versions.rs: VERLIB_MAJOR=1 (release 1.9.0: `field` at offset 8) and
 * VERLIB_MAJOR=2 (release 2.21.5: a member added before it, `field` at offset 16). Each
 * carries its version (VERLIB_VERSION) as text, as NCCL does ("NCCL version 2.32.3+cuda12.9"). */
#include <stdint.h>

#if VERLIB_MAJOR == 1
struct verlib_handle { int64_t id; int32_t field; };
#else
struct verlib_handle { int64_t id; int64_t added; int32_t field; };
#endif
/* VERLIB_VERSION: "1.9.0", "2.21.5", ... (given by the build). */
const char verlib_version[] = "VERLIB version " VERLIB_VERSION;

/* Release 2 swapped the first two arguments (a per-version argument layout). */
#if VERLIB_MAJOR == 1
__attribute__((noinline)) int verlib_work(int32_t a, int64_t b, struct verlib_handle *h)
#else
__attribute__((noinline)) int verlib_work(int64_t b, int32_t a, struct verlib_handle *h)
#endif
{
    return (int)(a + b + h->field);
}
