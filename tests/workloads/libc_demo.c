/* Calls the libc functions of the libcdemo fixture pack: getpid() and setenv(). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
    printf("pid %d\n", (int)getpid());
    setenv("ZETA", "1", 1);
    setenv("ALPHA", "2", 0);
    return 0;
}
