/* A program that makes traced calls all the time, for the fault tests (tests/record_faults.rs):
 * the shortapp pack's launch_wrapper and on_complete (tests/fixtures/packs/shortapp), one pair
 * every millisecond, saying how many pairs it has made every 100 ms ("steady_app made N").
 *   steady_app [SECONDS]   runs that long (default 600), or until SIGTERM/SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef void (*kernel_fn)(long);

__attribute__((noinline)) void short_kernel(long i) { __asm__ volatile("" ::"r"(i)); }

__attribute__((noinline)) int launch_wrapper(kernel_fn kernel, long i) {
    __asm__ volatile("" ::"r"(kernel));
    return (int)(i * 2);
}

__attribute__((noinline)) void on_complete(long i) { __asm__ volatile("" ::"r"(i)); }

static volatile sig_atomic_t stop;
static void on_stop(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    long secs = argc > 1 ? atol(argv[1]) : 600;
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    printf("steady_app pid %d\n", getpid());
    fflush(stdout);
    struct timespec d = {0, 1000000L};
    long n = 0;
    for (long i = 0; !stop && i < secs * 1000; i++) {
        launch_wrapper(short_kernel, i);
        on_complete(i);
        n++;
        if (n % 100 == 0) {
            printf("steady_app made %ld\n", n);
            fflush(stdout);
        }
        nanosleep(&d, NULL);
    }
    printf("steady_app made %ld\n", n);
    printf("steady_app done\n");
    return 0;
}
