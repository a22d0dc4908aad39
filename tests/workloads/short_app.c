/* A program that makes a handful of traced calls and exits at once: the case where a
 * recorder that stops too early loses the last records, and where the process is gone before
 * its memory map can be copied. Its own functions are probed (tests/fixtures/packs/shortapp):
 * launch_wrapper(kernel, i) as an application's kernel-launch wrapper, with a code address,
 * then on_complete(i) as the completion callback.
 *   short_app [N]     N iterations (default 3): 2N traced calls */
#include <stdio.h>
#include <stdlib.h>

typedef void (*kernel_fn)(long);

__attribute__((noinline)) void short_kernel(long i) { __asm__ volatile("" ::"r"(i)); }

__attribute__((noinline)) int launch_wrapper(kernel_fn kernel, long i) {
    __asm__ volatile("" ::"r"(kernel));
    return (int)(i * 2);
}

__attribute__((noinline)) void on_complete(long i) { __asm__ volatile("" ::"r"(i)); }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 3;
    int sum = 0;
    for (long i = 0; i < n; i++) {
        sum += launch_wrapper(short_kernel, i);
        on_complete(i);
    }
    printf("short_app %ld iterations kernel %p sum %d\n", n, (void *)short_kernel, sum);
    return 0;
}
