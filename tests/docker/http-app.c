/* The app of the shell-less hook test (tests/docker.rs), compiled with
 * `cc -static` by tests/docker/setup.sh into an image that holds nothing but
 * it and a static usher: no shell, no curl, so only usher's own HTTP client
 * can call its endpoint.
 *
 *   http-app PORT
 *       Listens on 127.0.0.1:PORT and answers one request per connection:
 *         POST /drain  200, and prints "http-app: drain requested"
 *         POST /fail   503, and prints "http-app: fail requested"
 *         anything else  200 "ok"
 *       On SIGTERM prints "http-app: got TERM" and exits 0.
 * Lines go straight to fd 1 with write(2): stdout is a pipe under docker,
 * and a buffered line could be lost or late. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void say(const char *line) {
    if (write(1, line, strlen(line)) < 0) _exit(3);
}

/* write(2) and _exit(2) are async-signal-safe: the handler can end the app
 * itself, wherever the main loop is. */
static void on_term(int sig) {
    (void)sig;
    say("http-app: got TERM\n");
    _exit(0);
}

static void answer(int conn, const char *status, const char *body) {
    char out[256];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, strlen(body), body);
    if (write(conn, out, n) < 0) say("http-app: write failed\n");
}

/* Reads the request head (bounded in size and, by SO_RCVTIMEO, in time)
 * and answers it by its request line. */
static void serve(int conn) {
    char req[4096];
    size_t got = 0;
    struct timeval limit = {5, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    while (got < sizeof req - 1) {
        ssize_t n = read(conn, req + got, sizeof req - 1 - got);
        if (n <= 0) break;
        got += n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[got] = '\0';
    if (strncmp(req, "POST /drain ", 12) == 0) {
        say("http-app: drain requested\n");
        answer(conn, "200 OK", "draining\n");
    } else if (strncmp(req, "POST /fail ", 11) == 0) {
        say("http-app: fail requested\n");
        answer(conn, "503 Service Unavailable", "failing on purpose\n");
    } else {
        answer(conn, "200 OK", "ok\n");
    }
}

int main(int argc, char **argv) {
    int port = argc == 2 ? atoi(argv[1]) : 0;
    if (port <= 0 || port > 65535) {
        say("usage: http-app PORT\n");
        return 2;
    }
    signal(SIGTERM, on_term);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 16) < 0) {
        perror("http-app: bind 127.0.0.1");
        return 1;
    }
    char ready[64];
    snprintf(ready, sizeof ready, "http-app: ready port=%d\n", port);
    say(ready);
    for (;;) {
        int conn = accept(fd, NULL, NULL);
        if (conn < 0) continue;
        serve(conn);
        close(conn);
    }
}
