#!/usr/bin/env python3
"""usher under storms: the long, on-demand versions of tests/storms.rs.

    bench/storm.py signals  [--count 100000] [--senders 4] [--window 256]
        Mixed signals (HUP, USR1, USR2, WINCH and eight real-time signals)
        from several sender processes at usher as PID 1. Reports time, usher's
        VmRSS and open fds before/after, real-time copies sent/received, and
        how long a TERM sent afterwards takes to reach the app.
    bench/storm.py orphans  [--count 20000] [--drain 1s] [--grace 3s] [--spread 2s]
        A shutdown (TERM; the app ignores it) during which COUNT orphans exit,
        spread over SPREAD from the start of the drain. Reports the deadline
        error (kill and exit against the grace period) and what was reaped.
    bench/storm.py burst    [--count 20000] [--rounds 3]
        usher is stopped (SIGSTOP) while COUNT real-time signals queue up for
        it, then continued: it reads them all in one go; ROUNDS times. Reports
        VmRSS before/after each: the memory usher keeps after a burst.
    bench/storm.py overflow [--limit 64] [--count 1000]
        What happens at RLIMIT_SIGPENDING: the app (limit LIMIT) holds off
        reading while COUNT real-time copies go through usher; usher's kill()
        succeeds every time, yet the kernel merges what does not fit in the
        app's queue. A sigqueue() straight at the app gets EAGAIN instead.
    bench/storm.py soak     [--idle 600] [--signals 1000000] [--sample 10]
        usher idle for IDLE seconds (strace -c on it for the whole idle time,
        if strace exists), then SIGNALS forwarded; VmRSS and open fds sampled
        every SAMPLE seconds while idle and every second while the signals
        go. bench/soak.sh runs this.

Common options: --usher PATH (default: target/release/usher, built with cargo
if missing), --json FILE (also write the figures as JSON). Needs root (or
unprivileged user namespaces) for `unshare --pid`, and `cc` for the app
(tests/storms/storm_app.c).
"""

import argparse
import ctypes
import json
import mmap
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_SRC = os.path.join(ROOT, "tests", "storms", "storm_app.c")
SLOTS = 72
SLOT_PID, SLOT_READS = 0, 65
STANDARD = [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH]
SIGRTMIN, SIGRTMAX = signal.SIGRTMIN.value, signal.SIGRTMAX.value
SI_QUEUE = -1
SYS_RT_SIGQUEUEINFO = {"x86_64": 129, "aarch64": 138}.get(os.uname().machine, 129)

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def say(*args):
    print("storm:", *args, flush=True)


# ------------------------------------------------------------------ setup --


def usher_binary(path):
    if path:
        return os.path.abspath(path)
    built = os.path.join(ROOT, "target", "release", "usher")
    if not os.path.exists(built):
        say("building usher (cargo build --release)")
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return built


def app_binary(workdir):
    out = os.path.join(workdir, "storm_app")
    subprocess.run(["cc", "-O2", "-Wall", "-o", out, APP_SRC], check=True)
    return out


def namespace_prefix():
    for prefix in (
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
        ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"],
    ):
        ok = subprocess.run(prefix + ["true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if ok.returncode == 0:
            return prefix
    sys.exit("storm: unshare --pid does not work here (needs root or user namespaces)")


def children_of(pid):
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return kids


def status_field(pid, name):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def rss_kb(pid):
    v = status_field(pid, "VmRSS")
    return int(v.split()[0]) if v else None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def wait_until(cond, within, step=0.005):
    end = time.monotonic() + within
    while True:
        if cond():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


class Usher:
    """usher as PID 1 of a fresh PID namespace, its stderr in a file."""

    def __init__(self, usher, args, workdir, prefix=()):
        self.err_path = os.path.join(workdir, "usher.err")
        self.err = open(self.err_path, "w")
        cmd = namespace_prefix() + list(prefix) + [usher] + list(args)
        self.outer = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=self.err, start_new_session=True)
        self.pid = None
        if not wait_until(lambda: self._find(), 10):
            self.kill()
            sys.exit("storm: usher did not appear under unshare")

    def _find(self):
        kids = children_of(self.outer.pid)
        if kids:
            self.pid = kids[0]
        return self.pid is not None

    def wait(self, within):
        try:
            return self.outer.wait(within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def stderr(self):
        self.err.flush()
        with open(self.err_path) as f:
            return f.read()

    def kill(self):
        if self.outer.poll() is None:
            try:
                os.killpg(self.outer.pid, signal.SIGKILL)
            except OSError:
                pass
            self.outer.wait()


class Counts:
    """The app's counts file (see storm_app.c), mapped shared."""

    def __init__(self, path, within=30):
        if not wait_until(lambda: os.path.exists(path) and os.path.getsize(path) == SLOTS * 8, within):
            sys.exit(f"storm: the app never created {path}")
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), SLOTS * 8, mmap.MAP_SHARED, mmap.PROT_READ)
        if not wait_until(lambda: self[SLOT_PID] != 0, within):
            sys.exit("storm: the app never got ready")

    def __getitem__(self, slot):
        return struct.unpack_from("=Q", self.map, slot * 8)[0]


# ---------------------------------------------------------------- senders --


class SigInfo(ctypes.Structure):
    _fields_ = [("signo", ctypes.c_int), ("errno", ctypes.c_int), ("code", ctypes.c_int),
                ("pad", ctypes.c_int * 29)]


def sigqueue(pid, sig):
    """Queues real-time `sig` at `pid`; False on EAGAIN (queue limit)."""
    info = SigInfo(sig, 0, SI_QUEUE)
    if libc.syscall(SYS_RT_SIGQUEUEINFO, ctypes.c_long(pid), ctypes.c_long(sig), ctypes.byref(info)) == 0:
        return True
    err = ctypes.get_errno()
    if err == 11:  # EAGAIN
        return False
    raise OSError(err, os.strerror(err))


def rt_pair(k):
    return [SIGRTMIN + k, SIGRTMAX - k]


def sender(target, k, n, counts, before, window, out_fd):
    """In a forked process: n signals, standard and real-time alternately."""
    sent = {}
    eagain = 0
    rt = rt_pair(k)
    for i in range(n):
        j = i // 2
        if i % 2 == 0:
            sig = STANDARD[(j + k) % len(STANDARD)]
            os.kill(target, sig)
        else:
            sig = rt[j % 2]
            mine = before.get(sig, 0) + sent.get(sig, 0)
            while mine - counts[sig] >= window:
                time.sleep(0.00005)
            while not sigqueue(target, sig):
                eagain += 1
                time.sleep(0.001)
        sent[sig] = sent.get(sig, 0) + 1
    os.write(out_fd, json.dumps({"sent": sent, "eagain": eagain}).encode())


def storm(target, total, senders, counts, before, window):
    """Runs `senders` forked sender processes; returns (sent by signal, eagain, seconds)."""
    per = total // senders
    began = time.monotonic()
    procs = []
    for k in range(senders):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 0
            try:
                sender(target, k, per, counts, before, window, w)
            except BaseException as e:  # report, never unwind into the parent's code
                print(f"storm: sender {k}: {e!r}", file=sys.stderr)
                code = 1
            os._exit(code)
        os.close(w)
        procs.append((pid, r))
    sent, eagain = dict(before), 0
    for pid, r in procs:
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        _, st = os.waitpid(pid, 0)
        if st != 0:
            sys.exit("storm: a sender failed")
        res = json.loads(b"".join(chunks))
        eagain += res["eagain"]
        for sig, n in res["sent"].items():
            sent[int(sig)] = sent.get(int(sig), 0) + n
    return sent, eagain, time.monotonic() - began


def prime(pid, senders, window, sent):
    """The largest batch a storm can hand usher in one read, queued while it is
    stopped: `window` copies of every real-time signal, each standard kind once.
    usher keeps buffers the size of its largest batch; after this, a storm
    with the same senders and window cannot need more."""
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: (status_field(pid, "State") or "").startswith("T"), 5)
    for sig in rt_signals(senders):
        for _ in range(window):
            while not sigqueue(pid, sig):
                time.sleep(0.001)
            sent[sig] = sent.get(sig, 0) + 1
    for sig in STANDARD:
        os.kill(pid, sig)
        sent[sig] = sent.get(sig, 0) + 1
    os.kill(pid, signal.SIGCONT)


def rt_signals(senders):
    return [s for k in range(senders) for s in rt_pair(k)]


def caught_up(counts, sent, senders):
    return all(counts[s] == sent.get(s, 0) for s in rt_signals(senders))


def report_counts(counts, sent, senders, figures):
    rt_ok = True
    rows = []
    for s in rt_signals(senders) + STANDARD:
        got, want = counts[s], sent.get(s, 0)
        kind = "rt" if s >= SIGRTMIN else "std"
        if kind == "rt" and got != want:
            rt_ok = False
        rows.append({"signal": int(s), "kind": kind, "sent": want, "received": got})
        say(f"  signal {int(s):2d} ({kind}): sent {want}, app received {got}")
    figures["per_signal"] = rows
    figures["rt_sent"] = sum(r["sent"] for r in rows if r["kind"] == "rt")
    figures["rt_received"] = sum(r["received"] for r in rows if r["kind"] == "rt")
    figures["rt_exact"] = rt_ok
    return rt_ok


def send_term(u, counts):
    t = time.monotonic()
    os.kill(u.pid, signal.SIGTERM)
    seen = wait_until(lambda: counts[signal.SIGTERM] >= 1, 10, step=0.0005)
    return (time.monotonic() - t) if seen else None


# ------------------------------------------------------------ experiments --


def run_signals(opts, workdir, usher, app):
    figures = {"experiment": "signals", "count": opts.count, "senders": opts.senders, "window": opts.window}
    counts_path = os.path.join(workdir, "counts")
    u = Usher(usher, ["--", app, "count", counts_path], workdir)
    try:
        counts = Counts(counts_path)
        rss_start, fds_start = rss_kb(u.pid), fd_count(u.pid)
        # Warm-up: usher keeps buffers the size of the largest batch it read
        # in one go, and its action queue is a ring that touches all of its
        # capacity over time. So first the storm's largest possible batch,
        # then a storm of the same shape; "before" then includes both.
        sent = {}
        prime(u.pid, opts.senders, opts.window, sent)
        if not wait_until(lambda: caught_up(counts, sent, opts.senders), 60):
            say("priming: real-time copies missing")
        time.sleep(0.2)
        rss_warm = rss_kb(u.pid)
        sent, _, _ = storm(u.pid, min(opts.count, 20_000), opts.senders, counts, sent, opts.window)
        if not wait_until(lambda: caught_up(counts, sent, opts.senders), 60):
            say("warm-up: real-time copies missing")
        time.sleep(0.2)
        rss0, fds0 = rss_kb(u.pid), fd_count(u.pid)
        warm = sum(sent.values())
        sent, eagain, secs = storm(u.pid, opts.count, opts.senders, counts, sent, opts.window)
        done = wait_until(lambda: caught_up(counts, sent, opts.senders), 120)
        delivered = time.monotonic()
        time.sleep(0.3)
        rss1, fds1 = rss_kb(u.pid), fd_count(u.pid)
        term = send_term(u, counts)
        code = u.wait(30)
        figures.update(
            warmup_signals=warm, storm_seconds=round(secs, 3), rate_per_s=round(opts.count / secs),
            all_rt_arrived=done, rss_start_kb=rss_start, rss_after_prime_kb=rss_warm, rss_before_kb=rss0,
            rss_after_kb=rss1,
            fds_start=fds_start, fds_before=fds0, fds_after=fds1, sigqueue_eagain=eagain,
            term_to_app_s=round(term, 4) if term is not None else None, exit_code=code,
            app_reads=counts[SLOT_READS])
        say(f"signals: {opts.count} mixed signals (after a warm-up of {warm}) from {opts.senders} senders "
            f"in {secs:.3f}s ({opts.count / secs:.0f}/s); sigqueue EAGAIN {eagain}")
        ok = report_counts(counts, sent, opts.senders, figures)
        say(f"  usher VmRSS {rss_start} kB at start, {rss_warm} kB after the largest possible batch "
            f"(primed), {rss0} kB after a warm-up storm, {rss1} kB after the storm; fds {fds_start} -> {fds0} -> {fds1}")
        say(f"  TERM after the storm reached the app in {term:.4f}s; usher exited {code}"
            if term is not None else "  TERM never reached the app")
        figures["ok"] = bool(ok and done and code == 0 and term is not None and fds1 == fds0)
        return figures
    finally:
        u.kill()


def run_orphans(opts, workdir, usher, app):
    drain, grace, spread = (parse_secs(x) for x in (opts.drain, opts.grace, opts.spread))
    step_us = int(spread * 1e6 / opts.count)
    figures = {"experiment": "orphans", "count": opts.count, "drain_s": drain, "grace_s": grace,
               "spread_s": spread}
    path = os.path.join(workdir, "orphans")
    u = Usher(usher, ["-v", "--drain", opts.drain, "--grace-period", opts.grace, "--",
                      app, "orphans", str(opts.count), str(step_us), path], workdir)
    try:
        t = time.monotonic()
        if not wait_until(lambda: os.path.exists(path), 300, step=0.05):
            sys.exit("storm: the app never forked its orphans")
        forked = time.monotonic() - t
        with open(path) as f:
            head = dict(line.split() for line in f.read().splitlines()[:3])
        stop = time.monotonic()
        os.kill(u.pid, signal.SIGTERM)
        os.kill(u.pid, signal.SIGUSR1)
        code = u.wait(grace + 60)
        took = time.monotonic() - stop
        err = u.stderr()
    finally:
        u.kill()
    kill_t, reaped, on_own, in_drain, after_drain = None, set(), 0, 0, 0
    buckets = {}
    for line in err.splitlines():
        m = re.match(r"usher: \+([0-9.]+)s (\w+): ([^:]+)(?:: (.*))?$", line)
        if not m:
            continue
        t, event, fields = float(m.group(1)), m.group(3), m.group(4) or ""
        if event == "grace period over, killing" and kill_t is None:
            kill_t = t
        elif event == "reaped":
            pid = int(re.search(r"pid=(\d+)", fields).group(1))
            reaped.add(pid)
            b = round(int(t / 0.25) * 0.25, 2)
            buckets[b] = buckets.get(b, 0) + 1
            if "status=exit:7" in fields:
                on_own += 1
                if t < drain:
                    in_drain += 1
                elif kill_t is None:
                    after_drain += 1
    figures.update(
        made=int(head["made"]), fork_failed=int(head["failed"]), fork_seconds=round(forked, 3),
        reaped=len(reaped), exited_on_their_own=on_own, reaped_in_drain=in_drain,
        reaped_after_drain_before_kill=after_drain, kill_at_s=kill_t,
        kill_error_s=round(kill_t - grace, 4) if kill_t is not None else None,
        exit_after_term_s=round(took, 4), exit_error_s=round(took - grace, 4), exit_code=code,
        reaped_per_quarter_second={f"{k:.2f}": v for k, v in sorted(buckets.items())})
    say(f"orphans: {figures['made']} forked in {forked:.2f}s ({figures['fork_failed']} forks failed); "
        f"drain {drain}s, grace {grace}s, exits spread over {spread}s")
    say(f"  reaped by usher: {len(reaped)} ({on_own} exited on their own: {in_drain} in the drain, "
        f"{after_drain} after it, before the kill)")
    say("  reaped per 0.25s from TERM: " + ", ".join(f"+{k:.2f}s {v}" for k, v in sorted(buckets.items())))
    say(f"  kill at +{kill_t}s (deadline error {figures['kill_error_s']}s); usher exited {took:.3f}s after "
        f"TERM (error {figures['exit_error_s']}s) with code {code}")
    figures["ok"] = bool(code == 137 and len(reaped) == figures["made"] and kill_t is not None)
    return figures


def run_burst(opts, workdir, usher, app):
    figures = {"experiment": "burst", "count": opts.count}
    counts_path = os.path.join(workdir, "counts")
    u = Usher(usher, ["--", app, "count", counts_path], workdir)
    try:
        counts = Counts(counts_path)
        sig = SIGRTMIN + 1
        rows = []
        sent = 0
        for n in [100] + [opts.count] * opts.rounds:
            rss0 = rss_kb(u.pid)
            os.kill(u.pid, signal.SIGSTOP)
            wait_until(lambda: (status_field(u.pid, "State") or "").startswith("T"), 5)
            eagain = 0
            for _ in range(n):
                while not sigqueue(u.pid, sig):
                    eagain += 1
                    time.sleep(0.001)
            sent += n
            t = time.monotonic()
            os.kill(u.pid, signal.SIGCONT)
            arrived = wait_until(lambda: counts[sig] == sent, 60)
            secs = time.monotonic() - t
            time.sleep(0.2)
            rss1 = rss_kb(u.pid)
            rows.append({"burst": n, "rss_before_kb": rss0, "rss_after_kb": rss1, "all_arrived": arrived,
                         "received_total": counts[sig], "sent_total": sent, "eagain": eagain,
                         "seconds": round(secs, 3)})
            say(f"burst of {n} queued while usher was stopped: forwarded in {secs:.3f}s, "
                f"app has {counts[sig]}/{sent}; usher VmRSS {rss0} -> {rss1} kB (EAGAIN {eagain})")
        term = send_term(u, counts)
        figures.update(rounds=rows, exit_code=u.wait(30), term_to_app_s=term)
        return figures
    finally:
        u.kill()


def run_overflow(opts, workdir, usher, app):
    figures = {"experiment": "overflow", "limit": opts.limit, "count": opts.count}
    counts_path = os.path.join(workdir, "counts")
    go = os.path.join(workdir, "go")
    # The limit is set on the app only (prlimit execs it); usher keeps its own.
    # -v: usher logs (debug) every forward that fails; none does.
    u = Usher(usher, ["-v", "--", "prlimit", f"--sigpending={opts.limit}", app, "count", counts_path, go],
              workdir)
    try:
        counts = Counts(counts_path)
        app_pid = None
        wait_until(lambda: bool(children_of(u.pid)), 5)
        app_pid = children_of(u.pid)[0]
        sig = SIGRTMIN + 2
        eagain_usher = 0
        for _ in range(opts.count):
            while not sigqueue(u.pid, sig):
                eagain_usher += 1
                time.sleep(0.001)
        # usher forwards each copy with kill(); nothing reads them at the app.
        time.sleep(1.0)
        sigq = status_field(app_pid, "SigQ")
        direct = sigqueue(app_pid, sig)
        open(go, "w").close()
        time.sleep(1.0)
        got = counts[sig]
        term = send_term(u, counts)
        code = u.wait(30)
        err = u.stderr()
        forwarded = err.count("debug: forwarded: signal=SIGRTMIN+2")
        failed = err.count("forward failed")
        figures.update(usher_forwarded=forwarded, usher_forward_failed=failed)
        figures.update(sent_to_usher=opts.count, sigqueue_eagain_at_usher=eagain_usher,
                       app_sigq_while_held=sigq, direct_sigqueue_to_full_app_accepted=direct,
                       app_received=got, exit_code=code)
        say(f"overflow: app RLIMIT_SIGPENDING={opts.limit}; {opts.count} copies of signal {sig} sent to usher "
            f"(EAGAIN at usher: {eagain_usher}); app's SigQ while it held off reading: {sigq}")
        say(f"  usher forwarded {forwarded} copies with kill(), {failed} of them failed")
        say(f"  a sigqueue() straight at the full app: {'accepted' if direct else 'EAGAIN'}; "
            f"the app then received {got} of {opts.count} copies usher forwarded with kill()")
        return figures
    finally:
        u.kill()


def strace_start(pid, workdir):
    """strace -c attached to `pid`: (tracer, output path), or (None, why not)."""
    try:
        ok = subprocess.run(["strace", "-V"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        ok = False
    if not ok:
        return None, "strace is not installed (apt-get install -y strace)"
    out = os.path.join(workdir, "strace.txt")
    tracer = subprocess.Popen(["strace", "-c", "-o", out, "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # attached
    return tracer, out


def strace_stop(tracer, out):
    """Detaches strace; returns ({syscall: calls}, raw summary)."""
    tracer.send_signal(signal.SIGINT)
    _, why = tracer.communicate(timeout=30)
    try:
        with open(out) as f:
            summary = f.read()
    except OSError:
        summary = ""
    why = why.decode().strip()
    if not summary.strip():
        # strace -c writes no table at all when it counted no call.
        if "attached" in why and "detached" in why:
            return {}, why
        return None, f"strace gave nothing: {why}"
    calls = {}
    for line in summary.splitlines():
        m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return calls, summary


def run_soak(opts, workdir, usher, app):
    import threading

    figures = {"experiment": "soak", "idle_s": opts.idle, "signals": opts.signals, "sample_s": opts.sample}
    counts_path = os.path.join(workdir, "counts")
    u = Usher(usher, ["--", app, "count", counts_path], workdir)
    samples = []
    t0 = time.monotonic()

    def sample(phase):
        row = {"t": round(time.monotonic() - t0, 1), "phase": phase, "rss_kb": rss_kb(u.pid),
               "fds": fd_count(u.pid), "at_app": sum(counts[s] for s in range(1, 65))}
        samples.append(row)
        say(f"  t={row['t']:7.1f}s {phase:7s} VmRSS {row['rss_kb']} kB, fds {row['fds']}, "
            f"signals received by the app {row['at_app']}")

    def sample_until(done, phase, every):
        nxt = time.monotonic() + every
        while not done():
            time.sleep(max(0.0, min(0.2, nxt - time.monotonic())))
            if time.monotonic() >= nxt:
                sample(phase)
                nxt += every

    try:
        counts = Counts(counts_path)
        # 1. Idle: nothing happens; usher should make no system call at all.
        say(f"soak: idle for {opts.idle:g}s, sampling every {opts.sample:g}s")
        sample("start")
        tracer, out = strace_start(u.pid, workdir)
        idle_end = time.monotonic() + opts.idle
        sample_until(lambda: time.monotonic() >= idle_end, "idle", opts.sample)
        if tracer is not None:
            calls, summary = strace_stop(tracer, out)
            figures["strace_idle_summary"] = summary
            shown = calls if calls else ("none at all" if calls == {} else "unknown")
            say(f"  idle system calls over {opts.idle:g}s (strace -c): {shown}")
            if calls is None:
                say("  " + summary)
        else:
            calls = None
            say(f"  idle system calls: not measured: {out}")
        figures["idle_syscalls"] = calls
        sample("idle")
        # 2. Signals, sampled as they go.
        say(f"soak: {opts.signals} signals from {opts.senders} senders (window {opts.window})")
        result = {}
        th = threading.Thread(target=lambda: result.update(
            r=storm(u.pid, opts.signals, opts.senders, counts, {}, opts.window)))
        th.start()
        # Every second while they go: the growth, if any, shows as it happens.
        sample_until(lambda: not th.is_alive(), "signals", min(opts.sample, 1.0))
        th.join()
        if "r" not in result:
            sys.exit("storm: the senders failed")
        sent, eagain, secs = result["r"]
        done = wait_until(lambda: caught_up(counts, sent, opts.senders), 120)
        time.sleep(0.5)
        sample("end")
        report = {}
        rt_ok = report_counts(counts, sent, opts.senders, report)
        term = send_term(u, counts)
        code = u.wait(30)
        first, idle_last, last = samples[0], [s for s in samples if s["phase"] == "idle"][-1], samples[-1]
        figures.update(samples=samples, signal_seconds=round(secs, 3), rate_per_s=round(opts.signals / secs),
                       sigqueue_eagain=eagain, all_rt_arrived=done, exit_code=code,
                       term_to_app_s=term, rss_first_kb=first["rss_kb"], rss_after_idle_kb=idle_last["rss_kb"],
                       rss_last_kb=last["rss_kb"], rss_max_kb=max(s["rss_kb"] for s in samples),
                       fds_first=first["fds"], fds_last=last["fds"],
                       fds_values=sorted({s["fds"] for s in samples}), **report)
        say(f"soak: idle {opts.idle:g}s: VmRSS {first['rss_kb']} -> {idle_last['rss_kb']} kB; "
            f"{opts.signals} signals in {secs:.1f}s ({opts.signals / secs:.0f}/s), EAGAIN {eagain}, "
            f"real-time exact: {rt_ok}; VmRSS at the end {last['rss_kb']} kB (max {figures['rss_max_kb']}); "
            f"fds seen {figures['fds_values']}; TERM to the app {term}; exit {code}")
        figures["ok"] = bool(rt_ok and done and code == 0 and len(figures["fds_values"]) == 1)
        return figures
    finally:
        u.kill()


def parse_secs(text):
    m = re.fullmatch(r"([0-9.]+)(ms|s)", text)
    if not m:
        sys.exit(f"storm: duration {text!r}: use e.g. 500ms or 3s")
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--usher")
    p.add_argument("--json")
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("signals")
    s.add_argument("--count", type=int, default=100_000)
    s.add_argument("--senders", type=int, default=4)
    s.add_argument("--window", type=int, default=256)
    o = sub.add_parser("orphans")
    o.add_argument("--count", type=int, default=20_000)
    o.add_argument("--drain", default="1s")
    o.add_argument("--grace", default="3s")
    o.add_argument("--spread", default="2s")
    b = sub.add_parser("burst")
    b.add_argument("--count", type=int, default=20_000)
    b.add_argument("--rounds", type=int, default=3)
    v = sub.add_parser("overflow")
    v.add_argument("--limit", type=int, default=64)
    v.add_argument("--count", type=int, default=1000)
    k = sub.add_parser("soak")
    k.add_argument("--idle", type=float, default=600)
    k.add_argument("--signals", type=int, default=1_000_000)
    k.add_argument("--sample", type=float, default=10)
    k.add_argument("--senders", type=int, default=4)
    k.add_argument("--window", type=int, default=256)
    opts = p.parse_args()
    if getattr(opts, "senders", 1) < 1 or getattr(opts, "senders", 1) > 16:
        sys.exit("storm: --senders must be 1..16")
    usher = usher_binary(opts.usher)
    with tempfile.TemporaryDirectory(prefix="usher-storm-") as workdir:
        app = app_binary(workdir)
        load = open("/proc/loadavg").read().split()[:3]
        say(f"{opts.what}: usher {usher}; load average {' '.join(load)} on {os.cpu_count()} CPUs")
        run = {"signals": run_signals, "orphans": run_orphans, "burst": run_burst, "overflow": run_overflow,
               "soak": run_soak}[opts.what]
        figures = run(opts, workdir, usher, app)
    figures["usher"] = usher
    figures["load_at_start"] = load
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(figures, f, indent=1)
    return 0 if figures.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
