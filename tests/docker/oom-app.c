/* The app of the OOM test (tests/docker.rs), compiled with `cc -static` by
 * tests/docker/setup.sh into /app/oom-app of the busybox images.
 *
 *   oom-app
 *       Prints "oom-app: ready pid=N", then allocates 1 MiB at a time and
 *       writes to every page of it (so its resident memory really grows),
 *       until the kernel's OOM killer kills it. Bounded: after 1 GiB it
 *       prints "oom-app: 1 GiB and still alive, giving up" and exits 99
 *       (98 if malloc itself fails), so it can never run away on a host
 *       without a memory limit.
 * Lines go straight to fd 1 with write(2): a buffered line would die with
 * the process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEP (1 << 20)
#define STEPS 1024

/* Kept reachable, so the compiler can drop neither the blocks nor the writes. */
static char *volatile blocks[STEPS];

static void say(const char *line) {
    if (write(1, line, strlen(line)) < 0) _exit(3);
}

int main(void) {
    char line[64];
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    snprintf(line, sizeof line, "oom-app: ready pid=%d\n", (int)getpid());
    say(line);
    for (int i = 0; i < STEPS; i++) {
        volatile char *block = malloc(STEP);
        if (!block) {
            say("oom-app: malloc failed\n");
            return 98;
        }
        for (long at = 0; at < STEP; at += page) block[at] = (char)i;
        blocks[i] = (char *)block;
    }
    say("oom-app: 1 GiB and still alive, giving up\n");
    return 99;
}
