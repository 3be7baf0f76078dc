/* Shared bits of usher's benchmark helpers (bench/run.sh compiles them). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <poll.h>
#include <unistd.h>

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((unused)) static void die(const char *what) {
    perror(what);
    exit(99);
}

/* Splits a command given as one string of space-separated words (no quoting). */
__attribute__((unused)) static char **split_words(const char *s) {
    char *copy = strdup(s);
    size_t cap = 8, n = 0;
    char **argv = malloc(cap * sizeof *argv);
    for (char *tok = strtok(copy, " "); tok; tok = strtok(NULL, " ")) {
        if (n + 2 > cap) argv = realloc(argv, (cap *= 2) * sizeof *argv);
        argv[n++] = tok;
    }
    argv[n] = NULL;
    return argv;
}

/* A small xorshift for shuffling the order of subjects in each round. */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
__attribute__((unused)) static void shuffle(int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng() % (uint64_t)(i + 1));
        int t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

/* Reads exactly 8 bytes from fd, waiting at most timeout_ms; -1 on timeout or error. */
__attribute__((unused)) static int read8_within(int fd, int64_t *out, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {}
    if (r != 1) return -1;
    return read(fd, out, sizeof *out) == (ssize_t)sizeof *out ? 0 : -1;
}
