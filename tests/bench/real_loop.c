/* Calls one function of the real HIP runtime in a loop (no GPU: each call fails fast but
 * enters the library): the workload of the probe-cost benchmark on the real library. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int hipGetDevice(int*); int hipStreamSynchronize(void*);
static double now(void){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec*1e9+t.tv_nsec;}
int main(int c, char**v){ long n=atol(v[2]); int d; int which = v[1][3]=='G'; hipGetDevice(&d); double t0=now(); for(long i=0;i<n;i++){ if(which) hipGetDevice(&d); else hipStreamSynchronize(0);} printf("%s %ld calls %.1f ns/call\n", v[1], n, (now()-t0)/n); return 0;}
