/* Calls the libc functions of the libcdemo and libcnest fixture packs: getpid(), setenv(),
 * qsort() (which calls qsort_r() inside glibc) and qsort_r(). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
static int cmp_r(const void *a, const void *b, void *arg) { (void)arg; return cmp(a, b); }

int main(void) {
    printf("pid %d\n", (int)getpid());
    setenv("ZETA", "1", 1);
    setenv("ALPHA", "2", 0);
    /* qsort calls qsort_r inside glibc: nested calls into the same library. */
    int v[5] = {5, 3, 4, 1, 2};
    qsort(v, 5, sizeof v[0], cmp);
    int w[7] = {7, 6, 5, 4, 3, 2, 1};
    qsort_r(w, 7, sizeof w[0], cmp_r, NULL);
    return 0;
}
