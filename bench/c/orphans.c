/* orphans MODE N: the app for the reaping tests, run as PID 2 under an init
 * that is PID 1 of a fresh PID namespace. A middle process forks N children;
 * they end up orphans of PID 1 in one of two ways:
 *
 *   flood  the N exit while the middle process is alive and does not reap
 *          them; once all N are zombies the middle exits, and the kernel hands
 *          all N zombies to PID 1 at once. Measures PID 1's reaping speed alone.
 *   storm  the middle exits first, so the N (blocked on a pipe) are live
 *          orphans of PID 1; then all N are released at once (the pipe's last
 *          writer closes) and exit together, competing with PID 1 for the CPU.
 *          Measures how far PID 1 falls behind: the peak number unreaped.
 *
 * This process holds a pidfd for each of the N (or as many as its open-file
 * limit allows, less 64: "monitored") and waits on them with epoll: the
 * kernel reports EPOLLIN when one exits and EPOLLHUP once it has been reaped,
 * so unreaped = exited - reaped is exact among the monitored and costs
 * nothing between events; done is when all monitored are reaped and /proc
 * lists no other child left. On kernels that do not wake pidfd pollers at reaping time, it falls
 * back to sampling the machine-wide task count (/proc/loadavg, which counts
 * a zombie until it is reaped) every millisecond: noisy if other processes
 * start or end meanwhile. Also reports PID 1's CPU time over the interval.
 * Prints one line of key=value. */
#include "common.h"
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

struct shared { int ready, exited, failed; };

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static long tasks_now(void) {
    char buf[128];
    int fd = open("/proc/loadavg", O_RDONLY);
    if (fd < 0) die("/proc/loadavg");
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0) die("read /proc/loadavg");
    buf[got] = 0;
    char *slash = strchr(buf, '/');
    return slash ? atol(slash + 1) : -1;
}

/* utime+stime of PID 1 (the init under test), in clock ticks. */
static long init_ticks(void) {
    char buf[1024];
    int fd = open("/proc/1/stat", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0) return -1;
    buf[got] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    long utime = 0, stime = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime) != 2)
        return -1;
    return utime + stime;
}

static int count_procs(void) {
    DIR *d = opendir("/proc");
    if (!d) die("/proc");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] >= '1' && e->d_name[0] <= '9') n++;
    closedir(d);
    return n;
}

static char state_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return '?';
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0) return '?';
    buf[got] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

/* Does this kernel wake a pidfd's pollers when the process is reaped? */
static int pidfd_reports_reaping(void) {
    pid_t c = fork();
    if (c < 0) return 0;
    if (c == 0) _exit(0);
    int pfd = pidfd_open(c), ep = epoll_create1(EPOLL_CLOEXEC), ok = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = 0}, out;
    if (pfd >= 0 && ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, pfd, &ev) == 0 &&
        epoll_wait(ep, &out, 1, 2000) == 1) {
        waitpid(c, NULL, 0);
        ok = epoll_wait(ep, &out, 1, 500) == 1 && (out.events & EPOLLHUP);
    } else {
        waitpid(c, NULL, 0);
    }
    if (pfd >= 0) close(pfd);
    if (ep >= 0) close(ep);
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "flood") && strcmp(argv[1], "storm"))) {
        fprintf(stderr, "usage: orphans flood|storm N\n");
        return 2;
    }
    int flood = strcmp(argv[1], "flood") == 0;
    int n = atoi(argv[2]);
    int use_pidfd = pidfd_reports_reaping();
    int monitor = n; /* how many children get a pidfd */
    if (use_pidfd) {
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)n + 64) {
            rlim_t want_fds = (rlim_t)n + 64;
            rl.rlim_cur = rl.rlim_max < want_fds ? rl.rlim_max : want_fds;
            setrlimit(RLIMIT_NOFILE, &rl); /* raising the hard limit needs CAP_SYS_RESOURCE */
            getrlimit(RLIMIT_NOFILE, &rl);
            if (rl.rlim_cur < (rlim_t)n + 64) monitor = rl.rlim_cur > 1064 ? (int)rl.rlim_cur - 64 : 0;
        }
        if (monitor == 0) use_pidfd = 0;
    }
    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t *kids = mmap(NULL, sizeof(pid_t) * n, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || kids == MAP_FAILED) die("mmap");
    int release[2], ready[2], go[2];
    if (pipe(release) < 0 || pipe(ready) < 0 || pipe(go) < 0) die("pipe");
    int64_t t_fork = now_ns();
    pid_t mid = fork();
    if (mid < 0) die("fork");
    if (mid == 0) {
        close(release[1]);
        close(ready[0]);
        close(go[1]);
        int made = 0;
        for (int i = 0; i < n; i++) {
            pid_t c = fork();
            if (c < 0) { __atomic_add_fetch(&sh->failed, 1, __ATOMIC_SEQ_CST); continue; }
            if (c == 0) {
                char ch;
                __atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
                if (!flood)
                    while (read(release[0], &ch, 1) < 0 && errno == EINTR) {}
                __atomic_add_fetch(&sh->exited, 1, __ATOMIC_SEQ_CST);
                _exit(0);
            }
            kids[made++] = c;
        }
        if (flood) /* wait until every child is a zombie */
            for (int i = 0; i < made; i++)
                while (state_of(kids[i]) != 'Z') usleep(1000);
        char ch = 'r';
        if (write(ready[1], &ch, 1) != 1) _exit(5);
        if (flood) /* hand them over when told: all N pass to PID 1 at once */
            while (read(go[0], &ch, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(release[0]);
    close(ready[1]);
    close(go[0]);
    int st;
    char ch;
    if (read(ready[0], &ch, 1) != 1) { fprintf(stderr, "orphans: middle process failed\n"); return 3; }
    int want = n - __atomic_load_n(&sh->failed, __ATOMIC_SEQ_CST);
    int64_t deadline = now_ns() + 180000000000LL;
    while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < want) {
        if (now_ns() > deadline) { fprintf(stderr, "orphans: children never ready\n"); return 3; }
        usleep(1000);
    }
    /* One pidfd per child, all in one epoll set. Every child is still
     * running (storm) or a zombie of the middle process (flood), so each pid
     * is still the child's. */
    int ep = -1;
    signed char *state = calloc(want, 1); /* 0 running, 1 zombie, 2 reaped */
    if (monitor > want) monitor = want;
    if (use_pidfd) {
        ep = epoll_create1(EPOLL_CLOEXEC);
        for (int i = 0; i < monitor && use_pidfd; i++) {
            int pfd = pidfd_open(kids[i]);
            struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = (uint32_t)i};
            if (pfd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pfd, &ev) < 0) use_pidfd = 0;
        }
    }
    if (!flood) waitpid(mid, &st, 0); /* the N are now live orphans of PID 1 */
    int64_t t_ready = now_ns();
    /* Count in real time: a real-time priority lets this process see each
     * exit and each reap as it happens, even when thousands of exiting
     * children compete for the CPUs (it sleeps in epoll_wait otherwise). */
    struct sched_param sp = {.sched_priority = 10};
    int rt = use_pidfd && sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
    int before = count_procs();
    long ticks0 = init_ticks();
    long tasks0 = tasks_now();
    int exited0 = __atomic_load_n(&sh->exited, __ATOMIC_SEQ_CST);
    int64_t t0 = now_ns();
    if (flood) {
        ch = 'g';
        if (write(go[1], &ch, 1) != 1) die("write go");
        waitpid(mid, &st, 0); /* returns once the middle has handed the zombies over */
    } else {
        close(release[1]); /* we held the pipe's last write end */
    }
    int64_t t_handed = now_ns();
    long peak = 0;
    int samples = 0, procs = before, exited = 0, reaped = 0;
    int64_t t_last_exit = 0, t_done = 0, t_check = 0;
    deadline = t0 + 180000000000LL;
    if (use_pidfd) {
        if (flood) exited = monitor, peak = monitor;
        for (int i = 0; flood && i < monitor; i++) state[i] = 1;
        struct epoll_event evs[1024];
        while (reaped < monitor) {
            int k = epoll_wait(ep, evs, 1024, 1000);
            if (k < 0 && errno != EINTR) die("epoll_wait");
            for (int j = 0; j < k; j++) {
                uint32_t i = evs[j].data.u32;
                if (evs[j].events & EPOLLHUP) {
                    if (state[i] == 0) exited++;
                    if (state[i] != 2) reaped++;
                    state[i] = 2;
                } else if ((evs[j].events & EPOLLIN) && state[i] == 0) {
                    exited++;
                    state[i] = 1;
                }
            }
            samples++;
            if (exited - reaped > peak) peak = exited - reaped;
            if (exited == monitor && !t_last_exit) t_last_exit = now_ns();
            if (now_ns() > deadline) break;
        }
        /* The unmonitored rest, if any: wait until /proc lists only PID 1 and us. */
        struct timespec pause_1ms = {0, 1000000};
        while (reaped == monitor && (procs = count_procs()) > 2 && now_ns() < deadline)
            nanosleep(&pause_1ms, NULL);
        if (reaped == monitor && procs <= 2) t_done = now_ns(), reaped = want;
    } else {
        struct timespec pause_1ms = {0, 1000000};
        for (;;) {
            int ex = __atomic_load_n(&sh->exited, __ATOMIC_SEQ_CST);
            /* flood: the middle's own exit removes one more task than storm's. */
            long unreaped = tasks_now() - tasks0 + (ex - exited0) + (flood ? want + 1 : 0);
            if (unreaped > peak) peak = unreaped;
            samples++;
            int64_t t = now_ns();
            if (ex == want && !t_last_exit) t_last_exit = t;
            if (ex == want && (unreaped < 64 || t - t_check > 2000000)) {
                t_check = t;
                procs = count_procs();
                if (procs <= 2) { t_done = now_ns(); break; }
            }
            if (t > deadline) break;
            nanosleep(&pause_1ms, NULL);
        }
        reaped = t_done ? want : 0;
    }
    if (flood || !t_last_exit) t_last_exit = flood ? t_handed : t_done;
    double init_cpu_ms = (init_ticks() - ticks0) * 1000.0 / sysconf(_SC_CLK_TCK);
    printf("orphans=%d failed=%d method=%s rt=%d monitored=%d procs_before=%d fork_ms=%.3f "
           "handover_ms=%.3f done_ms=%.3f lag_ms=%.3f peak_unreaped=%ld samples=%d left=%d "
           "init_cpu_ms=%.0f\n",
           want, n - want, use_pidfd ? "pidfd" : "loadavg", rt, use_pidfd ? monitor : 0, before,
           (t_ready - t_fork) / 1e6,
           (t_handed - t0) / 1e6, t_done ? (t_done - t0) / 1e6 : -1.0,
           t_done ? (t_done - t_last_exit) / 1e6 : -1.0, peak, samples, want - reaped,
           init_cpu_ms);
    fflush(stdout);
    return t_done ? 0 : 4;
}
