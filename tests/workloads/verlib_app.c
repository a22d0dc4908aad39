/* Calls verlib_work(a=7, b=8, h->field=42) on whichever release of libverlib it was built
 * against (VERLIB_MAJOR: 1 or 2, as tests/workloads/verlib.c). */
#include <stdint.h>
#include <stdio.h>

#if VERLIB_MAJOR == 1
struct verlib_handle { int64_t id; int32_t field; };
int verlib_work(int32_t a, int64_t b, struct verlib_handle *h);
#define CALL(h) verlib_work(7, 8, h)
#else
struct verlib_handle { int64_t id; int64_t added; int32_t field; };
int verlib_work(int64_t b, int32_t a, struct verlib_handle *h);
#define CALL(h) verlib_work(8, 7, h)
#endif

int main(void)
{
    struct verlib_handle h = {0};
    h.id = 1;
    h.field = 42;
    printf("verlib_work %d\n", CALL(&h));
    return 0;
}
