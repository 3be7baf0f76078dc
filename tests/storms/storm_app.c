/* The app for usher's storm tests (tests/storms.rs) and scripts (bench/storm.py,
 * bench/soak.sh), compiled with `cc -O2` at test time.
 *
 *   storm_app count FILE [GO]
 *       Counts every signal it gets, reliably: all catchable signals are
 *       blocked and read from a signalfd, so a queued real-time signal is
 *       counted once per copy delivered. FILE is created as 72 native u64
 *       slots, mapped shared so another process can watch the counts live:
 *         [0]      pid of this process, once it is ready (signals blocked)
 *         [1..64]  how many times each signal number arrived
 *         [65]     how many reads of the signalfd it took
 *         [66]     1 once it has exited after SIGTERM
 *       With GO, it holds off reading until the file GO exists (signals wait
 *       queued in the kernel meanwhile): the queue-limit experiment.
 *       Exits 0 after the read that brought SIGTERM.
 *
 *   storm_app orphans N STEP_US FILE
 *       Ignores SIGTERM and blocks SIGUSR1, then forks a middle process that
 *       forks N children and exits: the N become orphans, handed to PID 1
 *       (or to a subreaper). Each child waits for SIGUSR1, then sleeps
 *       i * STEP_US microseconds (i = 0..N-1) and exits 7, so the N exits are
 *       spread over N * STEP_US after the release. FILE (written by the
 *       middle, renamed into place once the middle has exited, so all N are
 *       orphans by the time it appears) holds `app PID`, `made M`,
 *       `failed K` and then one orphan pid per line. This process then
 *       sleeps until SIGKILLed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 72

static void die(const char *what) {
    perror(what);
    exit(99);
}

static int count(const char *file, const char *go) {
    sigset_t all;
    sigfillset(&all);
    /* Blocked before anything else: nothing is lost between exec and read. */
    if (sigprocmask(SIG_SETMASK, &all, NULL) < 0) die("sigprocmask");
    int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) die("open counts");
    if (ftruncate(fd, SLOTS * 8) < 0) die("ftruncate");
    uint64_t *slot = mmap(NULL, SLOTS * 8, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (slot == MAP_FAILED) die("mmap");
    int sfd = signalfd(-1, &all, SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");
    __atomic_store_n(&slot[0], (uint64_t)getpid(), __ATOMIC_SEQ_CST);
    if (go) {
        struct stat st;
        while (stat(go, &st) < 0) usleep(10000);
    }
    struct signalfd_siginfo buf[64];
    for (;;) {
        ssize_t got = read(sfd, buf, sizeof buf);
        if (got < 0) {
            if (errno == EINTR) continue;
            die("read signalfd");
        }
        int term = 0;
        for (size_t i = 0; i < (size_t)got / sizeof buf[0]; i++) {
            unsigned s = buf[i].ssi_signo;
            if (s >= 1 && s <= 64) __atomic_add_fetch(&slot[s], 1, __ATOMIC_SEQ_CST);
            if (s == SIGTERM) term = 1;
        }
        __atomic_add_fetch(&slot[65], 1, __ATOMIC_SEQ_CST);
        if (term) {
            __atomic_store_n(&slot[66], 1, __ATOMIC_SEQ_CST);
            msync(slot, SLOTS * 8, MS_SYNC);
            return 0;
        }
    }
}

static int orphans(int n, long step_us, const char *file) {
    signal(SIGTERM, SIG_IGN);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &usr1, NULL) < 0) die("sigprocmask");
    pid_t app = getpid();
    pid_t mid = fork();
    if (mid < 0) die("fork middle");
    if (mid == 0) {
        pid_t *kids = calloc((size_t)n, sizeof *kids);
        if (!kids) die("calloc");
        int made = 0, failed = 0;
        for (int i = 0; i < n; i++) {
            pid_t c = fork();
            if (c < 0) {
                failed++;
                continue;
            }
            if (c == 0) {
                int sig;
                while (sigwait(&usr1, &sig) != 0) {}
                if (step_us > 0) {
                    long long ns = (long long)i * step_us * 1000;
                    struct timespec ts = {ns / 1000000000, ns % 1000000000};
                    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
                }
                _exit(7);
            }
            kids[made++] = c;
        }
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", file);
        FILE *f = fopen(tmp, "w");
        if (!f) die("fopen");
        fprintf(f, "app %d\nmade %d\nfailed %d\n", (int)app, made, failed);
        for (int i = 0; i < made; i++) fprintf(f, "%d\n", (int)kids[i]);
        if (fclose(f) != 0) die("fclose");
        _exit(0);
    }
    int status;
    while (waitpid(mid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) exit(98);
    /* Only now, with every orphan handed over, does FILE appear. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    if (rename(tmp, file) < 0) die("rename");
    for (;;) pause();
}

int main(int argc, char **argv) {
    if (argc >= 3 && argc <= 4 && strcmp(argv[1], "count") == 0)
        return count(argv[2], argc == 4 ? argv[3] : NULL);
    if (argc == 5 && strcmp(argv[1], "orphans") == 0)
        return orphans(atoi(argv[2]), atol(argv[3]), argv[4]);
    fprintf(stderr, "usage: storm_app count FILE [GO] | orphans N STEP_US FILE\n");
    return 2;
}
