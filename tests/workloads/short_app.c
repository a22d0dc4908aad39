/* A program that makes a handful of traced calls and exits at once: the case where a
 * recorder that stops too early loses the last records, and where the process is gone before
 * its memory map can be copied. Its own functions are probed (tests/fixtures/packs/shortapp):
 * launch_wrapper(kernel, i) as an application's kernel-launch wrapper, with a code address,
 * then on_complete(i) as the completion callback.
 *   short_app [N [DELAY_MS [FORK]]]
 *                     N iterations (default 3): 2N traced calls, after DELAY_MS ms (default 0;
 *                     -1: once a line is read from stdin); with FORK = 1 a child process makes
 *                     the same calls too. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef void (*kernel_fn)(long);

__attribute__((noinline)) void short_kernel(long i) { __asm__ volatile("" ::"r"(i)); }

__attribute__((noinline)) int launch_wrapper(kernel_fn kernel, long i) {
    __asm__ volatile("" ::"r"(kernel));
    return (int)(i * 2);
}

__attribute__((noinline)) void on_complete(long i) { __asm__ volatile("" ::"r"(i)); }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 3;
    long delay_ms = argc > 2 ? atol(argv[2]) : 0;
    int fork_child = argc > 3 && atoi(argv[3]) == 1;
    printf("short_app pid %d\n", getpid());
    fflush(stdout);
    if (delay_ms < 0) {
        char line[16];
        if (!fgets(line, sizeof line, stdin)) return 1;
    } else if (delay_ms > 0) {
        struct timespec d = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        nanosleep(&d, NULL);
    }
    pid_t child = fork_child ? fork() : -1;
    if (child == 0) printf("short_app child pid %d\n", getpid());
    int sum = 0;
    for (long i = 0; i < n; i++) {
        sum += launch_wrapper(short_kernel, i);
        on_complete(i);
    }
    printf("short_app %ld iterations kernel %p sum %d\n", n, (void *)short_kernel, sum);
    if (child > 0) waitpid(child, NULL, 0);
    return 0;
}
