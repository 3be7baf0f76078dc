# A small expect(1) for the terminal tests (tests/hardening.rs): drives a
# program on a pty, waits for output with deadlines, reports process states,
# kills its tree by pid. The test appends a scenario to this file and runs
# it as `python3 drive.py ARGV...`.
import os, pty, select, signal, sys, time

def stat(pid):
    """The fields of /proc/PID/stat after the command name: state, ppid, ..."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ["?", "0"]

def state(pid):
    return stat(pid)[0]

def children(pid):
    procs = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return sorted(p for p in procs if int(stat(p)[1]) == pid)

def tree(pid):
    all, i = [pid], 0
    while i < len(all):
        all += children(all[i]); i += 1
    return all

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

out, mark = b"", 0
def pump(t):
    global out
    r, _, _ = select.select([fd], [], [], t)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        out += data
    return True

def fail(why):
    sys.stdout.write("FAIL: " + why + "\n--- transcript ---\n" + out.decode(errors="replace"))
    for p in reversed(tree(pid)):
        try: os.kill(p, signal.SIGKILL)
        except OSError: pass
    sys.exit(1)

def expect(needle, count=1, t=15):
    global mark
    needle = needle.encode()
    end = time.time() + t
    while out.count(needle, mark) < count:
        if time.time() > end or not pump(0.05):
            if out.count(needle, mark) >= count: break
            fail(f"no {needle!r} x{count}")
    i = mark
    for _ in range(count):
        i = out.index(needle, i) + len(needle)
    mark = i

def send(s):
    os.write(fd, s.encode())

def wait_state(p, want, t=15):
    end = time.time() + t
    while state(p) not in want:
        if time.time() > end:
            fail(f"pid {p} is {state(p)}, not {want}")
        pump(0.02)

def keeps_state(p, bad, t=1.0):
    end = time.time() + t
    while time.time() < end:
        if state(p) in bad:
            fail(f"pid {p} went {state(p)}")
        pump(0.02)

def finish(t=15):
    end = time.time() + t
    while time.time() < end:
        w, st = os.waitpid(pid, os.WNOHANG)
        if w:
            pump(0.1)
            return os.waitstatus_to_exitcode(st)
        pump(0.05)
    fail("did not exit")
