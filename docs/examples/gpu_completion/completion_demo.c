/* GPU completion times, the original tool's way, on a program's own functions.
 *
 * A CUDA (or HIP) application launches work through its own wrapper, and after each launch
 * enqueues a host function on the same stream; the runtime calls it once the GPU has finished
 * everything before it on the stream:
 *
 *     void launch_wrapper(int kernel, long token) {
 *         my_kernel<<<grid, block, 0, stream>>>(...);
 *         cudaLaunchHostFunc(stream, done_cb, (void *)token);  // done_cb calls on_complete(token)
 *     }
 *
 * Probing launch_wrapper and on_complete, joined by their token (a link key), gives each
 * launch's GPU completion time, whatever the runtime: no GPU-side tracing needed.
 *
 * This demo stands in for the GPU with a "stream" thread that runs the queued work in order
 * (kernel k takes (k + 1) ms) and then calls on_complete(token), as the runtime's callback
 * thread would. Usage: completion_demo [LAUNCHES] (default 12). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define QUEUE 64

static struct { int kernel; long token; } queue[QUEUE];
static int head, tail, closed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;

/* The completion callback: called on the stream's thread when launch `token` is done. */
__attribute__((noinline)) void on_complete(long token)
{
    __asm__ volatile("" ::"r"(token) : "memory");
}

/* The application's launch wrapper: enqueue kernel `kernel`, to be completed as `token`. */
__attribute__((noinline)) void launch_wrapper(int kernel, long token)
{
    pthread_mutex_lock(&lock);
    while (tail - head == QUEUE)
        pthread_cond_wait(&changed, &lock);
    queue[tail % QUEUE].kernel = kernel;
    queue[tail % QUEUE].token = token;
    tail++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static void *stream_thread(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (head == tail && !closed)
            pthread_cond_wait(&changed, &lock);
        if (head == tail) {
            pthread_mutex_unlock(&lock);
            return NULL;
        }
        int kernel = queue[head % QUEUE].kernel;
        long token = queue[head % QUEUE].token;
        head++;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
        struct timespec t = {0, (kernel + 1) * 1000000L}; /* the "GPU" runs the kernel */
        nanosleep(&t, NULL);
        on_complete(token);
    }
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 12;
    pthread_t stream;
    pthread_create(&stream, NULL, stream_thread, NULL);
    for (int i = 0; i < n; i++)
        launch_wrapper(i % 3, 1000 + i);
    pthread_mutex_lock(&lock);
    closed = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    pthread_join(stream, NULL);
    printf("launched %d, completed %d\n", n, head);
    return 0;
}
