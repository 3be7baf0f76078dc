/* idlers N: forks N children that sleep in read() on a pipe, prints "ready"
 * once all exist, then waits for its own stdin to close; then releases and
 * reaps them all. Puts N more processes on the machine, for the start-up
 * scaling test (an init whose exit path reads every process in /proc slows
 * down with them). */
#include "common.h"

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: idlers N\n"); return 2; }
    int n = atoi(argv[1]), made = 0;
    int p[2];
    if (pipe(p) < 0) die("pipe");
    for (int i = 0; i < n; i++) {
        pid_t c = fork();
        if (c < 0) break;
        if (c == 0) {
            char ch;
            close(p[1]);
            while (read(p[0], &ch, 1) < 0 && errno == EINTR) {}
            _exit(0);
        }
        made++;
    }
    close(p[0]);
    printf("ready %d\n", made);
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}
    close(p[1]);
    while (wait(NULL) > 0 || errno == EINTR) {}
    return made == n ? 0 : 1;
}
