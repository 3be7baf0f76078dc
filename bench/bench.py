#!/usr/bin/env python3
"""Measures usher against tini, tini-static, dumb-init and catatonit.

Run through bench/run.sh, which installs the peers, builds a static usher and
compiles the C helpers in bench/c/ first. Every metric measures all inits in
the same run, interleaved (shuffled order each round) or side by side at the
same time, and writes everything to one JSON file that bench/report.py turns
into docs/benchmarks.md and the chart.

Standard library only.
"""

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# The numbers each mode uses. Full must stay well under 15 minutes on 2 cores;
# quick is a smoke test (well under 2 minutes including the build).
COUNTS = {
    "full": dict(startup=2000, startup_ns=1000, siglat=5000, siglat_passes=3, idle_s=10,
                 scaling=[0, 1000, 3000], scaling_rounds=60,
                 orphans=20000, reap_rounds={"flood": 5, "storm": 3}, shutdown=100,
                 shutdown_crowd=3000, warmup=20),
    "quick": dict(startup=100, startup_ns=40, siglat=300, siglat_passes=2, idle_s=3,
                  scaling=[0, 1000], scaling_rounds=10,
                  orphans=2000, reap_rounds={"flood": 1, "storm": 1}, shutdown=10,
                  shutdown_crowd=1000, warmup=5),
}

DRAIN_MS = 200
GRACE_MS = 500  # leaves the drain clear of the stop reserve (min(2 s, grace/2))


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values, p):
    """Percentile by linear interpolation between closest ranks (p in 0..100)."""
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summary(values):
    return {
        "n": len(values),
        "min": min(values),
        "p10": pct(values, 10),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


class Inits:
    """The inits under test and how each is started."""

    def __init__(self, usher):
        which = lambda n: shutil.which(n) or f"/usr/bin/{n}"
        self.paths = {
            "usher": usher,
            "tini": which("tini"),
            "tini-static": which("tini-static"),
            "dumb-init": which("dumb-init"),
            "catatonit": which("catatonit"),
        }
        self.names = list(self.paths)

    def host(self, name):
        """Words before the app's command when the init is NOT PID 1.

        Each is made a child subreaper where it has the option (tini -s,
        usher -s); catatonit registers itself as one when it is not PID 1;
        dumb-init has no such option (it only reaps its own children then).
        """
        p = self.paths[name]
        return {
            "usher": [p, "-s", "--"],
            "tini": [p, "-s", "--"],
            "tini-static": [p, "-s", "--"],
            "dumb-init": [p],
            "catatonit": [p, "--"],
        }[name]

    def pid1(self, name):
        """Words before the app's command when the init IS PID 1 (defaults)."""
        p = self.paths[name]
        return [p] if name == "dumb-init" else [p, "--"]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def words(cmd):
    for w in cmd:
        if " " in w:
            sys.exit(f"bench: a path with a space is not supported: {w!r}")
    return " ".join(cmd)


# ---------------------------------------------------------------- environment

class LoadSampler(threading.Thread):
    """Samples /proc/loadavg every few seconds while the benchmark runs."""

    def __init__(self, every=2.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            with open("/proc/loadavg") as f:
                self.samples.append(float(f.read().split()[0]))
            self.stop.wait(self.every)


def cpu_times():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields), idle


def proc_ticks():
    """{pid: (comm, utime+stime ticks)} of every process now."""
    out = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                line = f.read()
        except OSError:
            continue
        comm = line[line.index("(") + 1:line.rindex(")")]
        fields = line[line.rindex(")") + 2:].split()
        out[int(e)] = (comm, int(fields[11]) + int(fields[12]))
    return out


def busy_window(seconds=3.0, n=6):
    """CPU use over a window: the machine's busy % and the busiest processes
    (% of one CPU), so the doc can say what else was running."""
    b0, p0 = cpu_times(), proc_ticks()
    time.sleep(seconds)
    b1, p1 = cpu_times(), proc_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    busy = round(100.0 * ((b1[0] - b0[0]) - (b1[1] - b0[1])) / max(b1[0] - b0[0], 1), 1)
    use = {}
    for pid, (comm, t) in p1.items():
        d = t - p0.get(pid, (comm, t))[1] if pid in p0 else 0
        if d > 0:
            use[comm] = use.get(comm, 0) + d
    top = sorted(use.items(), key=lambda kv: -kv[1])[:n]
    return busy, [{"comm": c, "cpu_pct": round(100.0 * d / hz / seconds, 1)} for c, d in top]


def environment():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    with open("/proc/loadavg") as f:
        load = f.read().split()
    procs = sum(1 for e in os.listdir("/proc") if e.isdigit())
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "mem_gib": round(mem_kib / 1048576, 1),
        "loadavg_start": [float(x) for x in load[:3]],
        "processes_start": procs,
        "pid_max": int(open("/proc/sys/kernel/pid_max").read()),
    }


def git_rev():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = run(["git", "-C", here, "rev-parse", "--short", "HEAD"]).strip()
        dirty = run(["git", "-C", here, "status", "--porcelain", "--", "../src",
                     "../Cargo.toml", "../Cargo.lock"]).strip()
        return rev + (" + uncommitted changes in src/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def versions(inits):
    out = {}
    for pkg in ("tini", "dumb-init", "catatonit"):
        try:
            out[pkg] = run(["dpkg-query", "-W", "-f", "${Version}", pkg]).strip()
        except (OSError, subprocess.CalledProcessError):
            out[pkg] = "?"
    try:
        out["usher"] = run([inits.paths["usher"], "--version"]).strip()
    except (OSError, subprocess.CalledProcessError):
        out["usher"] = "?"
    return out


# ---------------------------------------------------------------- 1. size

def sizes(inits, tmp):
    res = {}
    for name in inits.names:
        path = inits.paths[name]
        copy = os.path.join(tmp, f"strip-{name}")
        shutil.copyfile(path, copy)
        subprocess.run(["strip", "--strip-all", copy], check=False,
                       capture_output=True)
        desc = run(["file", "-b", "-L", path]).strip()
        ldd = subprocess.run(["ldd", path], text=True, capture_output=True)
        ldd_text = (ldd.stdout + ldd.stderr).strip()
        static = ("statically linked" in desc or "static-pie" in desc) and (
            "not a dynamic executable" in ldd_text or "statically linked" in ldd_text)
        res[name] = {
            "path": path,
            "bytes": os.path.getsize(path),
            "stripped_bytes": os.path.getsize(copy),
            "static": static,
            "file": desc.split(", BuildID")[0],
            "ldd": ldd_text.splitlines()[0] if ldd_text else "",
        }
    return res


# ---------------------------------------------------------------- 2. start-up

def startup(inits, helpers, rounds, warmup, pid1):
    true = shutil.which("true") or "/usr/bin/true"
    prefix = ["unshare", "--pid", "--fork", "--mount-proc"] if pid1 else []
    if prefix:
        prefix[0] = shutil.which("unshare") or "/usr/bin/unshare"
    cmds = [prefix + [true]]
    for name in inits.names:
        cmds.append(prefix + (inits.pid1(name) if pid1 else inits.host(name)) + [true])
    seed = random.randrange(1 << 30)
    out = run([os.path.join(helpers, "startup"), str(rounds), str(warmup), str(seed)]
              + [words(c) for c in cmds])
    times = [[] for _ in cmds]
    failures = [0] * len(cmds)
    for line in out.splitlines():
        i, ns, rc = (int(x) for x in line.split())
        times[i].append(ns / 1000.0)
        failures[i] += rc != 0
    base = summary(times[0])
    res = {"baseline": base, "baseline_cmd": words(cmds[0]), "inits": {}}
    for k, name in enumerate(inits.names, start=1):
        s = summary(times[k])
        res["inits"][name] = {
            "cmd": words(cmds[k]),
            "total_us": s,
            "overhead_p50_us": s["p50"] - base["p50"],
            "overhead_p90_us": s["p90"] - base["p90"],
            "failures": failures[k],
        }
    return res


@contextlib.contextmanager
def idlers(helpers, extra):
    """EXTRA idle processes on the machine for the duration (bench/c/idlers.c)."""
    if not extra:
        yield
        return
    idl = subprocess.Popen([os.path.join(helpers, "idlers"), str(extra)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = idl.stdout.readline().split()
        if not line or int(line[1]) != extra:
            raise RuntimeError(f"idlers made only {line}")
        yield
    finally:
        idl.stdin.close()
        idl.wait(timeout=60)


def startup_scaling(inits, helpers, extras, rounds, warmup):
    """Start-up overhead (not PID 1) with EXTRA idle processes added to the
    machine, for each EXTRA; and usher and tini-static as PID 1 beside them."""
    true = shutil.which("true") or "/usr/bin/true"
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    ns = [unshare, "--pid", "--fork", "--mount-proc"]
    cmds = [("true", [true])] + [(n, inits.host(n) + [true]) for n in inits.names]
    cmds += [("PID 1: unshare true", ns + [true]),
             ("PID 1: usher", ns + inits.pid1("usher") + [true]),
             ("PID 1: tini-static", ns + inits.pid1("tini-static") + [true])]
    res = {"rounds": rounds, "extras": {}}
    for extra in extras:
        with idlers(helpers, extra):
            procs = sum(1 for e in os.listdir("/proc") if e.isdigit())
            seed = random.randrange(1 << 30)
            out = run([os.path.join(helpers, "startup"), str(rounds), str(warmup), str(seed)]
                      + [words(c) for _, c in cmds])
        times = [[] for _ in cmds]
        for line in out.splitlines():
            i, ns_, _ = (int(x) for x in line.split())
            times[i].append(ns_ / 1000.0)
        p50 = {name: pct(t, 50) for (name, _), t in zip(cmds, times)}
        row = {"processes": procs}
        for name, _ in cmds:
            if name in ("true", "PID 1: unshare true"):
                continue
            base = "PID 1: unshare true" if name.startswith("PID 1") else "true"
            row[name] = p50[name] - p50[base]
        res["extras"][str(extra)] = row
    return res


# ---------------------------------------------------------------- 3+4. idle

def status_fields(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            out[key] = val.strip()
    return out


def memory(pid):
    st = status_fields(pid)
    kib = lambda k: int(st.get(k, "0 kB").split()[0])
    pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return {"rss_kib": kib("VmRSS"), "rss_anon_kib": kib("RssAnon"),
            "rss_file_kib": kib("RssFile"), "pss_kib": pss}


def ctxt(pid):
    st = status_fields(pid)
    return int(st["voluntary_ctxt_switches"]), int(st["nonvoluntary_ctxt_switches"])


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def stop_tree(procs):
    """TERM each init (it forwards to its app), then KILL whatever is left, by pid."""
    kids = {p.pid: children_of(p.pid) for p in procs}
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for pid in (k for ks in kids.values() for k in ks):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def parse_perf_summary(text):
    """perf trace -s: per-pid syscall counts, {pid: {syscall: calls}}."""
    res, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^\s*(.+) \((\d+)\), \d+ events", line)
        if m:
            cur = int(m.group(2))
            res[cur] = {}
            continue
        m = re.match(r"^\s+([a-z_0-9]+)\s+(\d+)\s+\d+\s+[\d.]+", line)
        if m and cur is not None:
            res[cur][m.group(1)] = int(m.group(2))
    return res


def parse_strace_summary(text):
    res = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit() and parts[-1] != "total":
            calls = int(parts[3])
            res[parts[-1]] = calls
    return res


def idle(inits, seconds, tmp):
    sleep = shutil.which("sleep") or "/usr/bin/sleep"
    subjects = [(n, inits.host(n)) for n in inits.names]
    # A copy, so that the two ushers share no page and each one's Pss is its own.
    u = os.path.join(tmp, "usher-draining")
    shutil.copy2(inits.paths["usher"], u)
    subjects.append(("usher (draining)", [u, "-s", "--drain", "1h", "--"]))
    procs = []
    try:
        for name, pre in subjects:
            procs.append(subprocess.Popen(pre + [sleep, "3600"], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        time.sleep(1.0)
        # The draining usher got its TERM: it now waits out a 1 h drain.
        procs[-1].send_signal(signal.SIGTERM)
        time.sleep(1.0)
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args} exited early ({p.returncode})")
        mem = {name: memory(p.pid) for (name, _), p in zip(subjects, procs)}
        pids = [p.pid for p in procs]
        tracer = None
        perf = shutil.which("perf")
        before = {pid: ctxt(pid) for pid in pids}
        t0 = time.monotonic()
        if perf:
            tracer = "perf trace -s"
            tp = subprocess.Popen([perf, "trace", "-s", "-p", ",".join(map(str, pids))],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
            time.sleep(seconds)
            tp.send_signal(signal.SIGINT)
            text, _ = tp.communicate(timeout=30)
            counts = parse_perf_summary(text)
            if tp.returncode not in (0, -2, 130) and not counts and "Summary" not in text:
                perf = None  # fall back to strace
        if not perf:
            tracer = "strace -c -p (attaching interrupts each init's wait once)"
            sps = [subprocess.Popen(["strace", "-c", "-p", str(pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True) for pid in pids]
            time.sleep(seconds)
            counts = {}
            for pid, sp in zip(pids, sps):
                sp.send_signal(signal.SIGINT)
                counts[pid] = parse_strace_summary(sp.communicate(timeout=30)[1])
        window = time.monotonic() - t0
        after = {pid: ctxt(pid) for pid in pids}
        res = {"window_s": window, "tracer": tracer, "inits": {}}
        for (name, pre), pid in zip(subjects, pids):
            vol = after[pid][0] - before[pid][0]
            invol = after[pid][1] - before[pid][1]
            calls = counts.get(pid, {})
            res["inits"][name] = {
                "cmd": words(pre + [sleep, "3600"]),
                "memory": mem[name],
                "ctxt_voluntary": vol,
                "ctxt_nonvoluntary": invol,
                "wakeups": vol + invol,
                "syscalls": sum(calls.values()),
                "syscalls_by_name": calls,
            }
        return res
    finally:
        stop_tree(procs)


# ---------------------------------------------------------------- 5. signals

def signal_latency_pass(inits, helpers, rounds, warmup, tmp, cpu):
    """One pass: every init (and the floor) interleaved, ROUNDS signals each;
    the latencies in µs, floor first."""
    app = os.path.join(helpers, "sigchild")
    specs = [f"floor={app} @FIFO"]
    for name in inits.names:
        specs.append(f"{name}={words(inits.host(name) + [app, '@FIFO'])}")
    seed = random.randrange(1 << 30)
    cmd = [os.path.join(helpers, "siglat"), str(rounds), str(warmup), str(seed), tmp] + specs
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu)] + cmd
    out = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout
    lat = [[] for _ in specs]
    for line in out.splitlines():
        i, ns = (int(x) for x in line.split())
        lat[i].append(ns / 1000.0)
    return lat


def over_passes(values):
    """Median and range of one figure over the passes."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "passes": values}


def signal_latency(inits, helpers, rounds, passes, warmup, tmp, cpu):
    """PASSES independent passes (fresh processes, a fresh shuffle each);
    each figure is the median over passes, with its range."""
    runs = [signal_latency_pass(inits, helpers, rounds, warmup, tmp, cpu) for _ in range(passes)]
    floors = [summary(r[0]) for r in runs]
    floor = {k: statistics.median(f[k] for f in floors) for k in floors[0] if k != "n"}
    floor["n"] = sum(f["n"] for f in floors)
    res = {"cpu": cpu, "signal": "SIGUSR1", "passes": passes, "rounds_per_pass": rounds,
           "floor_us": floor, "inits": {}}
    for k, name in enumerate(inits.names, start=1):
        per = [summary(r[k]) for r in runs]
        s = {q: statistics.median(p[q] for p in per) for q in per[0] if q != "n"}
        s["n"] = sum(p["n"] for p in per)
        res["inits"][name] = {
            "latency_us": s,
            "p50_over_passes": over_passes([p["p50"] for p in per]),
            "p99_over_passes": over_passes([p["p99"] for p in per]),
            "over_floor_p50_over_passes": over_passes(
                [p["p50"] - f["p50"] for p, f in zip(per, floors)]),
            "over_floor_p99_over_passes": over_passes(
                [p["p99"] - f["p99"] for p, f in zip(per, floors)]),
            "over_floor_p50_us": statistics.median(p["p50"] - f["p50"] for p, f in zip(per, floors)),
            "over_floor_p99_us": statistics.median(p["p99"] - f["p99"] for p, f in zip(per, floors)),
        }
    return res


# ---------------------------------------------------------------- 6. reaping

def reaping(inits, helpers, n, rounds):
    """Each init as PID 1 of a new PID namespace with bench's orphans app, in a
    shuffled order per round: "flood" (N zombies handed to PID 1 at once) and
    "storm" (N live orphans of PID 1 exit at once)."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    app = os.path.join(helpers, "orphans")
    res = {"orphans": n, "modes": {}}
    for mode, count in (("flood", rounds["flood"]), ("storm", rounds["storm"])):
        runs = {name: [] for name in inits.names}
        errors = {name: [] for name in inits.names}
        for r in range(count):
            order = list(inits.names)
            random.shuffle(order)
            for name in order:
                cmd = [unshare, "--pid", "--fork", "--mount-proc", "--kill-child"] + inits.pid1(
                    name) + [app, mode, str(n)]
                log(f"  reaping, {mode} round {r + 1}/{count}: {name}")
                try:
                    p = subprocess.run(cmd, text=True, capture_output=True, timeout=300)
                except subprocess.TimeoutExpired:
                    errors[name].append("timed out after 300 s")
                    continue
                m = dict(kv.split("=", 1) for line in p.stdout.splitlines()
                         if line.startswith("orphans=") for kv in line.split())
                if not m or p.returncode != 0:
                    errors[name].append(f"exit {p.returncode}: {p.stderr.strip()[-300:]}")
                if m:
                    runs[name].append({k: (v if k == "method" else float(v)) for k, v in m.items()})
                # Let the kernel finish tearing the namespace down before the next one.
                time.sleep(1.0)
        out = {"rounds": count, "inits": {}}
        for name in inits.names:
            ok = [x for x in runs[name] if x["done_ms"] > 0]
            entry = {"runs": runs[name], "errors": errors[name]}
            if ok:
                entry.update({
                    "rate_per_s": summary([x["orphans"] / (x["done_ms"] / 1000.0) for x in ok]),
                    "done_ms": summary([x["done_ms"] for x in ok]),
                    "lag_ms": summary([x["lag_ms"] for x in ok]),
                    "peak_unreaped": summary([x["peak_unreaped"] for x in ok]),
                    "init_cpu_ms": summary([x["init_cpu_ms"] for x in ok]),
                    "fork_ms": summary([x["fork_ms"] for x in ok]),
                    "failed_forks": max(x["failed"] for x in ok),
                    "methods": sorted({x.get("method", "?") for x in ok}),
                })
            out["inits"][name] = entry
        res["modes"][mode] = out
    return res


# ---------------------------------------------------------------- 7. shutdown

def shutdown(inits, helpers, runs, tmp, crowd):
    """usher alone: as a subreaper on this host, and as PID 1 of a new PID
    namespace (where /proc lists only the app), alternating in blocks of 5;
    then the same with CROWD unrelated idle processes on the machine (an
    init that lists the whole host at its deadline slows down with them)."""
    app = os.path.join(helpers, "stopchild")
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    flags = ["--drain", f"{DRAIN_MS}ms", "--grace-period", f"{GRACE_MS}ms", "--", app, "@FIFO"]
    modes = {
        "host": ("direct", [inits.paths["usher"], "-s"] + flags),
        "pid1": ("child", [unshare, "--pid", "--fork", "--mount-proc", "--kill-child",
                           inits.paths["usher"]] + flags),
    }
    res = {"drain_ms": DRAIN_MS, "grace_ms": GRACE_MS, "crowd": crowd, "modes": {}}
    for extra, suffix in ((0, ""), (crowd, "_crowd")):
        with idlers(helpers, extra):
            got = timer_runs(helpers, modes, runs, tmp)
        for m, (how, cmd) in modes.items():
            drain, deadline, codes, running, total = got[m]
            res["modes"][m + suffix] = {
                "cmd": words(cmd),
                "processes": extra,
                "drain_error_ms": summary(drain),
                "deadline_error_ms": summary(deadline),
                "exit_codes": sorted(set(codes)),
                "runnable_at_send": summary(running),
                "tasks_at_send": summary(total),
                "raw": list(zip(drain, deadline, running, total)),
            }
    return res


def timer_runs(helpers, modes, runs, tmp):
    got = {m: ([], [], [], [], []) for m in modes}
    block = 5
    for start in range(0, runs, block):
        for m, (how, cmd) in modes.items():
            n = min(block, runs - start)
            out = run([os.path.join(helpers, "shutdown"), str(n), tmp, how, words(cmd)])
            for line in out.splitlines():
                d, e, rc, running, total = (int(x) for x in line.split())
                got[m][0].append(d / 1e6 - DRAIN_MS)
                got[m][1].append(e / 1e6 - GRACE_MS)
                got[m][2].append(rc)
                got[m][3].append(running)
                got[m][4].append(total)
    return got


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--usher", required=True)
    ap.add_argument("--helpers", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--command", default="bench/run.sh")
    ap.add_argument("--only", default="", help="comma list of metrics (debugging)")
    ap.add_argument("--rust", default="?", help="rustc version and target, for the doc")
    ap.add_argument("--load-at-start", default="", help="load average as run.sh saw it")
    ap.add_argument("--wall-start", type=float, default=0,
                    help="when run.sh started (epoch s), to record how long the command took")
    a = ap.parse_args()

    mode = "quick" if a.quick else "full"
    c = COUNTS[mode]
    only = set(filter(None, a.only.split(",")))
    want = lambda m: not only or m in only
    inits = Inits(os.path.abspath(a.usher))
    helpers = os.path.abspath(a.helpers)
    log("environment: CPU use by everything on the machine over 3 s before starting")
    env = environment()
    env["cpu_busy_pct_before"], env["top_before"] = busy_window()
    if a.load_at_start:
        env["loadavg_at_command_start"] = [float(x) for x in a.load_at_start.split()]
    env["usher_build"] = a.rust
    env["usher_rev"] = git_rev()
    res = {"mode": mode, "counts": c, "command": a.command, "env": env,
           "versions": versions(inits), "paths": inits.paths}
    sampler = LoadSampler()
    sampler.start()
    cpu0 = cpu_times()
    t_start = time.monotonic()
    ncpu = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="usher-bench-") as tmp:
        if want("size"):
            log("1/7 size")
            res["size"] = sizes(inits, tmp)
        if want("startup"):
            log(f"2/7 start-up, not PID 1: {c['startup']} interleaved rounds")
            res["startup"] = startup(inits, helpers, c["startup"], c["warmup"], pid1=False)
            log(f"2/7 start-up, PID 1 of a new PID namespace: {c['startup_ns']} rounds")
            res["startup_pid1"] = startup(inits, helpers, c["startup_ns"], c["warmup"],
                                          pid1=True)
        if want("scaling"):
            log(f"2/7 start-up with {c['scaling']} extra idle processes on the machine: "
                f"{c['scaling_rounds']} rounds each")
            res["startup_scaling"] = startup_scaling(inits, helpers, c["scaling"],
                                                     c["scaling_rounds"], 3)
        if want("idle"):
            log(f"3-4/7 idle memory and wake-ups: all inits side by side for {c['idle_s']} s")
            res["idle"] = idle(inits, c["idle_s"], tmp)
        if want("signals"):
            log(f"5/7 signal latency: {c['siglat_passes']} passes of {c['siglat']} interleaved "
                f"rounds on CPU {ncpu - 1}")
            res["signals"] = signal_latency(inits, helpers, c["siglat"], c["siglat_passes"],
                                            c["warmup"] * 10, tmp, ncpu - 1)
        if want("shutdown"):
            log(f"6/7 shutdown timers: {c['shutdown']} runs, then again with "
                f"{c['shutdown_crowd']} unrelated processes on the machine")
            res["shutdown"] = shutdown(inits, helpers, c["shutdown"], tmp, c["shutdown_crowd"])
        seen = sampler.samples or [float(open("/proc/loadavg").read().split()[0])]
        res["env"]["loadavg_1m_before_reaping"] = {"min": min(seen), "max": max(seen)}
        if want("reaping"):
            log(f"7/7 reaping: {c['orphans']} orphans, rounds per init {c['reap_rounds']}")
            res["reaping"] = reaping(inits, helpers, c["orphans"], c["reap_rounds"])
    sampler.stop.set()
    sampler.join()
    cpu1 = cpu_times()
    total, idle_t = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    with open("/proc/loadavg") as f:
        res["env"]["loadavg_end"] = [float(x) for x in f.read().split()[:3]]
    seen = sampler.samples or [float(open("/proc/loadavg").read().split()[0])]
    res["env"]["loadavg_1m_during"] = {"min": min(seen), "max": max(seen)}
    res["env"]["cpu_busy_pct_during"] = round(100.0 * (total - idle_t) / max(total, 1), 1)
    res["env"]["cpu_busy_pct_after"], res["env"]["top_after"] = busy_window()
    res["duration_s"] = round(time.monotonic() - t_start, 1)
    if a.wall_start:
        res["command_s"] = round(time.time() - a.wall_start, 1)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"measured in {res['duration_s']} s; results in {a.out}")


if __name__ == "__main__":
    main()
