/* sigchild FIFO: the app for the signal-latency test. Its SIGUSR1 handler
 * writes the CLOCK_MONOTONIC time (8 bytes) to FIFO; it writes 0 once when
 * ready. Any other signal has its default action. stopchild.c is this
 * program with another signal and name. */
#include "common.h"

#ifndef STAMPED
#define STAMPED SIGUSR1
#define NAME "sigchild"
#endif

static int out = -1;

static void stamp(int sig) {
    (void)sig;
    int64_t t = now_ns();
    ssize_t w = write(out, &t, sizeof t);
    (void)w;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: " NAME " FIFO\n"); return 2; }
    out = open(argv[1], O_WRONLY);
    if (out < 0) die(argv[1]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stamp;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(STAMPED, &sa, NULL);
    int64_t ready = 0;
    if (write(out, &ready, sizeof ready) != sizeof ready) die("write");
    for (;;) pause();
}
