/* stopchild FIFO: the app for the shutdown-timer test. Writes 0 to FIFO when
 * ready; on SIGTERM writes the CLOCK_MONOTONIC time and carries on (so the
 * grace period has to SIGKILL it). */
#include "common.h"

static int out = -1;

static void on_term(int sig) {
    (void)sig;
    int64_t t = now_ns();
    ssize_t w = write(out, &t, sizeof t);
    (void)w;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: stopchild FIFO\n"); return 2; }
    out = open(argv[1], O_WRONLY);
    if (out < 0) die(argv[1]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    int64_t ready = 0;
    if (write(out, &ready, sizeof ready) != sizeof ready) die("write");
    for (;;) pause();
}
