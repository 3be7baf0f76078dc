/* siglat ROUNDS WARMUP SEED DIR NAME=CMD...
 * Starts every CMD (words; the word @FIFO becomes a fresh FIFO in DIR that the
 * app, bench's sigchild, writes to). NAME "floor" means CMD is the app itself
 * and the signal goes straight to it. Then, in each round, in a shuffled
 * order, sends SIGUSR1 to each started process and reads back the app
 * handler's timestamp: latency = handler time - time just before kill().
 * Prints "index nanoseconds" per signal (warm-up omitted). Ends with TERM. */
#include "common.h"
#include <sys/stat.h>

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: siglat ROUNDS WARMUP SEED DIR NAME=CMD...\n"); return 2; }
    int rounds = atoi(argv[1]), warmup = atoi(argv[2]);
    rng_state ^= strtoull(argv[3], NULL, 10) * 2654435761ULL + 1;
    const char *dir = argv[4];
    int n = argc - 5;
    pid_t *pids = calloc(n, sizeof *pids);
    int *fds = calloc(n, sizeof *fds), *order = calloc(n, sizeof *order);
    int devnull = open("/dev/null", O_RDWR);
    for (int i = 0; i < n; i++) {
        char *spec = strdup(argv[5 + i]);
        char *eq = strchr(spec, '=');
        if (!eq) { fprintf(stderr, "bad spec %s\n", spec); return 2; }
        *eq = 0;
        char **words = split_words(eq + 1);
        char fifo[4096];
        snprintf(fifo, sizeof fifo, "%s/sig-%d.fifo", dir, i);
        unlink(fifo);
        if (mkfifo(fifo, 0600) < 0) die("mkfifo");
        fds[i] = open(fifo, O_RDWR); /* never blocks, unlike O_RDONLY */
        if (fds[i] < 0) die("open fifo");
        for (char **w = words; *w; w++)
            if (strcmp(*w, "@FIFO") == 0) *w = strdup(fifo);
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            dup2(devnull, 0); dup2(devnull, 1);
            execv(words[0], words);
            _exit(127);
        }
        pids[i] = pid;
        int64_t ready;
        if (read8_within(fds[i], &ready, 10000) < 0 || ready != 0) {
            fprintf(stderr, "siglat: %s: app not ready within 10 s\n", spec);
            for (int j = 0; j <= i; j++) kill(pids[j], SIGKILL);
            return 3;
        }
    }
    usleep(100000); /* let every init settle into its wait */
    for (int r = 0; r < warmup + rounds; r++) {
        for (int i = 0; i < n; i++) order[i] = i;
        shuffle(order, n);
        for (int k = 0; k < n; k++) {
            int i = order[k];
            int64_t t0 = now_ns(), t1;
            if (kill(pids[i], SIGUSR1) < 0) die("kill");
            if (read8_within(fds[i], &t1, 10000) < 0) {
                fprintf(stderr, "siglat: no answer within 10 s from %s\n", argv[5 + i]);
                for (int j = 0; j < n; j++) kill(pids[j], SIGKILL);
                return 4;
            }
            if (r >= warmup) printf("%d %lld\n", i, (long long)(t1 - t0));
        }
    }
    fflush(stdout);
    for (int i = 0; i < n; i++) kill(pids[i], SIGTERM);
    for (int i = 0; i < n; i++) {
        int st;
        alarm(10);
        waitpid(pids[i], &st, 0);
    }
    return 0;
}
