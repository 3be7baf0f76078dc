/* shutdown RUNS DIR MODE CMD: CMD (words; @FIFO as in siglat) is usher with a
 * drain and a grace period running bench's stopchild. Each run: start it, wait
 * for the app to be ready, idle 20 ms, send usher SIGTERM, then take the time
 * the app's TERM handler ran (drain) and the time CMD was reaped (deadline),
 * both from just before kill(). MODE "direct": CMD is usher itself; "child":
 * CMD is a launcher (unshare --fork) whose only child is usher, which gets the
 * TERM. Prints "drain_ns exit_ns status running total" per run, the last two
 * being the machine's runnable and total task counts (/proc/loadavg) just
 * before the signal: the load the timers had to cut through. */
#include "common.h"
#include <sys/stat.h>

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: shutdown RUNS DIR direct|child CMD\n"); return 2; }
    int via_child = strcmp(argv[3], "child") == 0;
    int runs = atoi(argv[1]);
    char fifo[4096];
    snprintf(fifo, sizeof fifo, "%s/stop.fifo", argv[2]);
    unlink(fifo);
    if (mkfifo(fifo, 0600) < 0) die("mkfifo");
    int fd = open(fifo, O_RDWR);
    if (fd < 0) die("open fifo");
    char **words = split_words(argv[4]);
    for (char **w = words; *w; w++)
        if (strcmp(*w, "@FIFO") == 0) *w = fifo;
    int devnull = open("/dev/null", O_RDWR);
    for (int r = 0; r < runs; r++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            dup2(devnull, 0); dup2(devnull, 1); dup2(devnull, 2);
            execv(words[0], words);
            _exit(127);
        }
        int64_t ready, t_term;
        if (read8_within(fd, &ready, 10000) < 0 || ready != 0) {
            fprintf(stderr, "shutdown: app not ready within 10 s\n");
            kill(pid, SIGKILL);
            return 3;
        }
        usleep(20000);
        pid_t target = pid;
        if (via_child) {
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
            FILE *f = fopen(path, "r");
            if (!f || fscanf(f, "%d", &target) != 1) { fprintf(stderr, "shutdown: no child\n"); return 3; }
            fclose(f);
        }
        long running = -1, total = -1;
        FILE *la = fopen("/proc/loadavg", "r");
        if (la) {
            if (fscanf(la, "%*f %*f %*f %ld/%ld", &running, &total) != 2) running = total = -1;
            fclose(la);
        }
        int64_t t0 = now_ns();
        kill(target, SIGTERM);
        if (read8_within(fd, &t_term, 10000) < 0) {
            fprintf(stderr, "shutdown: the app got no SIGTERM within 10 s\n");
            kill(pid, SIGKILL);
            return 4;
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        int64_t t_exit = now_ns();
        printf("%lld %lld %d %ld %ld\n", (long long)(t_term - t0), (long long)(t_exit - t0),
               WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), running, total);
        fflush(stdout);
    }
    return 0;
}
