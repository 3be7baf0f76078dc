#!/usr/bin/env python3
"""Drives `docker run -it ... /app/tty-app` through a pseudo-terminal for tests/docker.rs.

Usage: tty.py CIDFILE -- DOCKER_RUN_ARGV...

Steps, each bounded in time:
  1. start DOCKER_RUN_ARGV on a new pty (24 rows, 80 columns) as its
     controlling terminal, as a user's terminal would be;
  2. wait for tty-app's "pid=... pgrp=... tpgid=..." line;
  3. once the client's own resizes at attach have settled, `docker kill -s
     WINCH` the container (a signal to usher, PID 1, which must forward it)
     and count the "WINCH size=24 80" lines it adds (winch_from_kill=N);
  4. resize the pty to 30x100 (the docker client resizes the container's
     terminal, whose kernel sends SIGWINCH to its foreground process group)
     and wait for "WINCH size=30 100";
  5. type "quit" and wait for the container to exit.

Prints winch_from_kill=N, the terminal transcript, then `step=NAME
ok|timeout` lines and `exit=CODE` (the docker client's exit code). Exits 0 when every step
completed, 1 otherwise.
"""

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time

STEP_LIMIT = 20.0


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    cidfile, argv = args[0], args[2:]

    master, slave = os.openpty()
    set_size(slave, 24, 80)

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=controlling_tty,
        close_fds=True,
    )
    os.close(slave)
    transcript = bytearray()
    results = []

    def pump(until, limit=STEP_LIMIT):
        """Reads the terminal until `until(transcript)` holds or time runs out."""
        end = time.monotonic() + limit
        while not until(transcript):
            left = end - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([master], [], [], min(left, 0.1))
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the other side is closed
                    data = b""
                if not data:
                    return until(transcript)
                transcript.extend(data)
        return True

    def step(name, ok):
        results.append((name, ok))
        return ok

    def has(text):
        return lambda t: text.encode() in t

    ok = step("started", pump(has("tty-app: pid=")))
    cid = ""
    if ok:
        end = time.monotonic() + STEP_LIMIT
        while time.monotonic() < end:
            try:
                with open(cidfile) as f:
                    cid = f.read().strip()
            except FileNotFoundError:
                pass
            if cid:
                break
            time.sleep(0.05)
        ok = step("cidfile", bool(cid))
    winch = "WINCH size=24 80".encode()
    if ok:
        # The docker client resizes the container's terminal as it attaches
        # (and that alone sends SIGWINCH): let those settle for a quiet
        # 1.5s, then count, so the one docker kill adds can be told apart.
        quiet = time.monotonic() + 1.5
        seen = transcript.count(winch)
        while time.monotonic() < quiet:
            pump(lambda t: False, 0.1)
            if transcript.count(winch) != seen:
                seen = transcript.count(winch)
                quiet = time.monotonic() + 1.5
        before = transcript.count(winch)
        kill = subprocess.run(
            ["docker", "kill", "-s", "WINCH", cid],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            timeout=STEP_LIMIT,
        )
        ok = step(
            "docker-kill-winch",
            kill.returncode == 0 and pump(lambda t: t.count(winch) > before),
        )
        # Anything more would be a second delivery; give it a moment to show.
        pump(lambda t: False, 0.5)
        print(f"winch_from_kill={transcript.count(winch) - before}")
    if ok:
        set_size(master, 30, 100)
        ok = step("resize-winch", pump(has("WINCH size=30 100")))
    if ok:
        os.write(master, b"quit\r")
        ok = step("read-quit", pump(has("read 'quit'")))

    # Wait for the docker client to end (it does once the container exits).
    end = time.monotonic() + STEP_LIMIT
    while proc.poll() is None and time.monotonic() < end:
        pump(lambda t: False, 0.1)
        time.sleep(0.02)
    if proc.poll() is None:
        step("exited", False)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    else:
        pump(lambda t: False, 0.2)  # the last output, if any
        step("exited", True)

    sys.stdout.write(transcript.decode(errors="replace").replace("\r", ""))
    sys.stdout.write("\n--- end of transcript ---\n")
    for name, good in results:
        print(f"step={name} {'ok' if good else 'timeout'}")
    print(f"exit={proc.returncode}")
    return 0 if all(good for _, good in results) else 1


if __name__ == "__main__":
    sys.exit(main())
