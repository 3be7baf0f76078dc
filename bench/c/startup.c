/* startup ROUNDS WARMUP SEED CMD...
 * Each CMD is one string of words. Every round runs every CMD once, in a
 * freshly shuffled order, timing fork+exec+wait with CLOCK_MONOTONIC.
 * Prints "index nanoseconds exitcode" per run (warm-up rounds omitted). */
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: startup ROUNDS WARMUP SEED CMD...\n"); return 2; }
    int rounds = atoi(argv[1]), warmup = atoi(argv[2]);
    rng_state ^= strtoull(argv[3], NULL, 10) * 2654435761ULL + 1;
    int n = argc - 4;
    char ***cmds = malloc(n * sizeof *cmds);
    int *order = malloc(n * sizeof *order);
    for (int i = 0; i < n; i++) cmds[i] = split_words(argv[4 + i]);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull < 0) die("/dev/null");
    for (int r = 0; r < warmup + rounds; r++) {
        for (int i = 0; i < n; i++) order[i] = i;
        shuffle(order, n);
        for (int k = 0; k < n; k++) {
            int i = order[k];
            int64_t t0 = now_ns();
            pid_t pid = fork();
            if (pid < 0) die("fork");
            if (pid == 0) {
                dup2(devnull, 0); dup2(devnull, 1); dup2(devnull, 2);
                execv(cmds[i][0], cmds[i]);
                _exit(127);
            }
            int st;
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
            int64_t t1 = now_ns();
            if (r >= warmup)
                printf("%d %lld %d\n", i, (long long)(t1 - t0),
                       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
    }
    return 0;
}
