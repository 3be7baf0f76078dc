#!/usr/bin/env python3
"""Rolling restarts of two nginx replicas behind haproxy, under fixed-rate load.

Each run emulates what a Deployment with 2 replicas does by default (maxSurge
1, maxUnavailable 0), twice (one step per old replica): start the replacement,
wait until it answers, enable it in haproxy; then `docker stop` the old
replica and only LAG seconds later disable it in haproxy (the endpoints
propagation delay). Meanwhile a client sends requests at a fixed rate through
haproxy and classifies every response. Runs of all scenarios are interleaved,
REPS times, and the results written as JSON (report.py turns them into the
table and the chart).

Everything listens on 127.0.0.1: haproxy on PORT_BASE, the replicas on
PORT_BASE+1..PORT_BASE+4 (containers use --network host). Every container
carries the labels of images.sh and is removed by id, also on failure or
Ctrl-C; haproxy is this process's child and is stopped by pid.

Usage: harness.py --images FILE --out FILE [options]  (see --help)
"""

import argparse
import asyncio
import calendar
import ctypes
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SMALL, SLOW = "/small", "/slow"
SIZES = {SMALL: 1024, SLOW: 102400}  # what images.sh puts in /srv

# name: (image, what runs, label). The usher options are filled in later.
SCENARIOS = {
    "shell": ("shell", "sh -c 'nginx; echo done' as PID 1, no init"),
    "tini-term": ("tini", "tini, SIGTERM"),
    "tini-quit": ("tini-quit", "tini, STOPSIGNAL SIGQUIT"),
    "usher-nodrain": ("usher", "usher -r TERM:QUIT, no drain"),
    "usher-short": ("usher", "usher --drain {short} -r TERM:QUIT (drain < lag)"),
    "usher-drain": ("usher", "usher --drain {drain} -r TERM:QUIT --grace-period {grace}"),
}
# haproxy variants: retries 0 (every failure reaches the client), haproxy's
# default retries (3, same server), and retries with `option redispatch`.
MODES = {
    "strict": "retries 0",
    "retries": "retries 3",
    "redispatch": "retries 3\n    option redispatch",
}


def log(msg):
    print(f"harness: {msg}", file=sys.stderr, flush=True)


def now():
    return time.monotonic()


# ---------------------------------------------------------------------------
# docker, with time limits; every container is remembered and removed by id


class Docker:
    def __init__(self, labels):
        self.labels = labels
        self.live = set()  # ids of containers this process started
        self.lock = threading.Lock()

    def run(self, args, limit=60, check=True):
        try:
            # Its own session: a Ctrl-C meant for the harness must not cut a
            # `docker run` short (the container would exist, its id unknown).
            p = subprocess.run(["docker", *args], capture_output=True, text=True,
                               timeout=limit, stdin=subprocess.DEVNULL, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"docker {' '.join(args)} did not finish in {limit}s")
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {p.stderr.strip()}")
        return p

    def start(self, image, args):
        cmd = ["run", "-d", "--network", "host"]
        for k, v in self.labels.items():
            cmd += ["--label", f"{k}={v}"]
        cid = self.run(cmd + [image, *args]).stdout.strip()
        with self.lock:
            self.live.add(cid)
        return cid

    def remove(self, cids):
        cids = [c for c in cids if c]
        if cids:
            self.run(["rm", "-f", "-v", *cids], limit=120, check=False)
            with self.lock:
                self.live.difference_update(cids)

    def remove_all(self):
        """Every container of this run: those started, and any other with its label."""
        run = f"label=usher-zd.run={self.labels['usher-zd.run']}"
        listed = self.run(["ps", "-aq", "--no-trunc", "--filter", run], check=False).stdout.split()
        with self.lock:
            cids = sorted(self.live | set(listed))
        self.remove(cids)


# ---------------------------------------------------------------------------
# haproxy, with its runtime API on a unix socket


def die_with_parent():
    """In the child before exec: SIGKILL when the parent dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


class Haproxy:
    def __init__(self, binary, port_base, mode, work):
        self.sock = os.path.join(work, f"haproxy-{mode}.sock")
        self.cfg = os.path.join(work, f"haproxy-{mode}.cfg")
        self.port = port_base
        servers = "\n".join(
            f"    server s{i} 127.0.0.1:{port_base + i} disabled" for i in range(1, 5))
        with open(self.cfg, "w") as f:
            f.write(f"""global
    stats socket {self.sock} mode 600 level admin
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    {MODES[mode]}
frontend fe
    bind 127.0.0.1:{port_base}
    default_backend be
backend be
    balance roundrobin
    http-response set-header X-Server %[srv_name]
{servers}
""")
        self.errlog = open(os.path.join(work, f"haproxy-{mode}.log"), "w")
        # In this process's group (a kill of the group reaches it), and
        # killed by the kernel if this process dies first.
        self.proc = subprocess.Popen([binary, "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=self.errlog, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        deadline = now() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited {self.proc.returncode}; see {self.errlog.name}")
            try:
                if "Name: HAProxy" in self.api("show info"):
                    break
            except OSError:
                pass
            if now() > deadline:
                raise RuntimeError("haproxy's runtime API did not answer in 15s")
            time.sleep(0.05)

    def api(self, command):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.sock)
            s.sendall(command.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode(errors="replace")

    def set_state(self, slot, state):
        out = self.api(f"set server be/s{slot} state {state}")
        if out.strip():
            raise RuntimeError(f"haproxy: set server s{slot} state {state}: {out.strip()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.errlog.close()


# ---------------------------------------------------------------------------
# the load: fixed rate, one connection per request, every response checked


async def one_request(port, path, t0, out):
    rec = {"t": t0, "path": path}
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except (OSError, asyncio.TimeoutError) as e:
        rec.update(kind="conn_error", detail=f"connect: {type(e).__name__}", end=now())
        out.append(rec)
        return
    body = 0
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: zd\r\nConnection: close\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        lines = head.decode(errors="replace").split("\r\n")
        status = int(lines[0].split()[1])
        hdr = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
        rec.update(status=status, server=hdr.get("x-server"))
        want = int(hdr.get("content-length", -1))
        if 200 <= status < 300:
            while body < SIZES[path]:
                chunk = await asyncio.wait_for(reader.read(65536), 20)
                if not chunk:
                    break
                body += len(chunk)
            full = want == SIZES[path] and body == want
            rec.update(kind="ok" if full else "cut", detail=None if full else f"{body}/{want} bytes")
        elif status >= 500:
            rec.update(kind="http_5xx", detail=lines[0])
        else:
            rec.update(kind="other", detail=lines[0])
    except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
        # Before the status line: no response at all; after it: a cut body.
        kind = "cut" if "status" in rec else "conn_error"
        rec.update(kind=kind, detail=f"{type(e).__name__} after {body} body bytes")
    except asyncio.TimeoutError:
        kind = "cut" if "status" in rec else "conn_error"
        rec.update(kind=kind, detail=f"timeout after {body} body bytes")
    except (ValueError, IndexError) as e:
        rec.update(kind="other", detail=f"bad response: {e}")
    finally:
        writer.close()
    rec["end"] = now()
    out.append(rec)


class Load:
    """Sends `rate` requests/s in a thread until stopped; `slow_share` of them /slow."""

    def __init__(self, port, rate, slow_share, seed):
        self.port, self.rate, self.slow_share = port, rate, slow_share
        self.rng = random.Random(seed)
        self.records = []
        self.stop_at = None
        self.lag_max = 0.0  # worst lateness of a send against its schedule
        self.thread = threading.Thread(target=lambda: asyncio.run(self.main()), daemon=True)

    def start(self):
        self.thread.start()

    async def main(self):
        tasks = set()
        start = now()
        i = 0
        while self.stop_at is None or start + i / self.rate < self.stop_at:
            due = start + i / self.rate
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lag_max = max(self.lag_max, now() - due)
            path = SLOW if self.rng.random() < self.slow_share else SMALL
            task = asyncio.create_task(one_request(self.port, path, now(), self.records))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    def finish(self):
        self.stop_at = now()
        self.thread.join(60)
        if self.thread.is_alive():
            raise RuntimeError("the load client did not finish within 60s")
        return self.records


# ---------------------------------------------------------------------------
# one rolling restart


def answers(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET /small HTTP/1.1\r\nHost: zd\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


SIGNAL_SEEN = ("stop received", "(SIGTERM) received", "(SIGQUIT) received")


def signal_seen(lines, wall_stop):
    """Seconds from `docker stop` to the first log line of PID 1 or nginx
    saying it got the stop signal (None for a shell, which logs nothing).
    A late signal shortens the effective lag: the lag runs from docker stop."""
    seen = []
    for line in lines:
        stamp, _, text = line.partition(" ")
        if any(s in text for s in SIGNAL_SEEN):
            try:
                day, frac = stamp.rstrip("Z").split(".")
                t = calendar.timegm(time.strptime(day, "%Y-%m-%dT%H:%M:%S"))
                seen.append(t + float("0." + frac) - wall_stop)
            except ValueError:
                continue
    return round(min(seen), 3) if seen else None


class Rollout:
    def __init__(self, args, docker, images):
        self.a, self.docker, self.images = args, docker, images

    def command(self, scenario, port):
        nginx = ["nginx", "-e", "stderr", "-c", f"/etc/nginx/{port}.conf", "-g", "daemon off;"]
        a = self.a
        if scenario == "shell":
            return [f"nginx -e stderr -c /etc/nginx/{port}.conf -g 'daemon off;'; echo done"]
        if scenario.startswith("tini"):
            return nginx
        opts = {"usher-nodrain": [],
                "usher-short": ["--drain", a.short],
                "usher-drain": ["--drain", a.drain, "--grace-period", a.grace]}[scenario]
        return [*opts, "-r", "TERM:QUIT", "--", *nginx]

    def replica(self, scenario, slot):
        port = self.a.port_base + slot
        if not free(port):
            raise RuntimeError(f"127.0.0.1:{port} is already taken")
        cid = self.docker.start(self.images[SCENARIOS[scenario][0]], self.command(scenario, port))
        deadline = now() + 30
        while not answers(port):
            if now() > deadline:
                logs = self.docker.run(["logs", cid], check=False)
                raise RuntimeError(f"replica on {port} did not answer in 30s: {logs.stderr[-2000:]}")
            time.sleep(0.05)
        return cid

    def stop_step(self, hap, old_cid, old_slot, step):
        """docker stop the old replica; disable it in haproxy LAG seconds later."""
        result = {}

        def stop():
            t = now()
            p = self.docker.run(["stop", "-t", str(self.a.stop_timeout), old_cid],
                                limit=self.a.stop_timeout + 60, check=False)
            result.update(took=now() - t, rc=p.returncode, err=p.stderr.strip())

        step["t_stop"], wall_stop = now(), time.time()
        th = threading.Thread(target=stop)
        th.start()
        time.sleep(max(0.0, step["t_stop"] + self.a.lag - now()))
        hap.set_state(old_slot, "maint")
        step["t_disable"] = now()
        th.join(self.a.stop_timeout + 90)
        if th.is_alive() or result.get("rc") != 0:
            raise RuntimeError(f"docker stop {old_cid[:12]} failed: {result}")
        state = self.docker.run(["inspect", "-f", "{{.State.ExitCode}}", old_cid]).stdout.strip()
        logs = self.docker.run(["logs", "--timestamps", old_cid], check=False)
        lines = (logs.stdout + logs.stderr).splitlines()
        step.update(stop_s=round(result["took"], 3), exit_code=int(state), logs=lines[-12:],
                    signal_s=signal_seen(lines, wall_stop))

    def run(self, hap, scenario, mode, rep, seed):
        a = self.a
        log(f"run: {scenario} / haproxy {mode} / rep {rep}")
        for slot in range(1, 5):
            hap.set_state(slot, "maint")
        old = {1: self.replica(scenario, 1), 2: self.replica(scenario, 2)}
        new = {}
        for slot in (1, 2):
            hap.set_state(slot, "ready")
        load = Load(hap.port, a.rate, a.slow_share, seed)
        steps = []
        try:
            t_load = now()
            load.start()
            time.sleep(a.warmup)
            for old_slot, new_slot in ((1, 3), (2, 4)):
                step = {"old": f"s{old_slot}", "new": f"s{new_slot}"}
                new[new_slot] = self.replica(scenario, new_slot)
                hap.set_state(new_slot, "ready")
                step["t_ready"] = now()
                time.sleep(a.settle)
                self.stop_step(hap, old[old_slot], old_slot, step)
                steps.append(step)
                time.sleep(a.settle)
            time.sleep(a.tail)
        finally:
            records = load.finish()
            self.docker.remove(list(old.values()) + list(new.values()))
        return summarize(scenario, mode, rep, records, steps, t_load, load.lag_max)


def summarize(scenario, mode, rep, records, steps, t_load, lag_max):
    counts = {k: 0 for k in ("ok", "http_5xx", "conn_error", "cut", "other")}
    failures = []
    stops = [s["t_stop"] for s in steps]
    for r in records:
        counts[r["kind"]] += 1
        if r["kind"] != "ok":
            # Relative to the nearest docker stop: negative for a request
            # that was in flight when the stop came.
            i = min(range(len(stops)), key=lambda k: abs(r["t"] - stops[k]))
            failures.append({"step": i + 1, "t_rel": round(r["t"] - stops[i], 3),
                             "end_rel": round(r.get("end", r["t"]) - stops[i], 3),
                             "kind": r["kind"], "path": r["path"],
                             "server": r.get("server"), "detail": r.get("detail")})
    for s in steps:
        for k in ("t_ready", "t_stop", "t_disable"):
            s[k] = round(s[k] - t_load, 3)
    # What retries turn failures into: time. The slowest small-page answers.
    small = sorted(r["end"] - r["t"] for r in records if r["kind"] == "ok" and r["path"] == SMALL)
    p99 = small[int(0.99 * (len(small) - 1))] if small else None
    return {"scenario": scenario, "mode": mode, "rep": rep, "sent": len(records),
            "failed": len(records) - counts["ok"], "counts": counts,
            "small_ok_p99_s": p99 and round(p99, 4), "small_ok_max_s": round(small[-1], 4) if small else None,
            "send_lateness_max_s": round(lag_max, 3), "steps": steps,
            "failures": sorted(failures, key=lambda f: (f["step"], f["t_rel"]))}


# ---------------------------------------------------------------------------


def plan(args):
    """(mode, scenario, rep) in run order: scenarios interleaved within a rep."""
    runs = []
    for rep in range(1, args.reps + 1):
        runs += [("strict", s, rep) for s in args.scenarios]
    for rep in range(1, args.extra_reps + 1):
        for mode in ("retries", "redispatch"):
            runs += [(mode, s, rep) for s in args.extra_scenarios]
    return runs


def version(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", required=True, help="NAME=ID lines from images.sh")
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--run-id", required=True, help="the RUN_ID given to images.sh")
    ap.add_argument("--port-base", type=int, default=18480)
    ap.add_argument("--lag", type=float, default=1.0, help="seconds between docker stop and disable")
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second")
    ap.add_argument("--slow-share", type=float, default=0.25, help="share of /slow requests")
    ap.add_argument("--drain", default="2s")
    ap.add_argument("--short", default="500ms", help="the drain shorter than the lag")
    ap.add_argument("--grace", default="8s")
    ap.add_argument("--stop-timeout", type=int, default=10, help="docker stop -t")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--settle", type=float, default=1.0, help="pause around each stop")
    ap.add_argument("--tail", type=float, default=1.5, help="load after the last step")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--extra-reps", type=int, default=3, help="runs per haproxy retries variant")
    ap.add_argument("--extra-scenarios", default="tini-term,usher-nodrain")
    ap.add_argument("--deadline", type=float, default=3600, help="give up after this many seconds")
    ap.add_argument("--command", default="", help="the command line to record")
    ap.add_argument("--usher-version", default="?", help="usher's version, to record")
    a = ap.parse_args()
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    a.extra_scenarios = [s for s in a.extra_scenarios.split(",") if s]
    for s in a.scenarios + a.extra_scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
    images = dict(line.strip().split("=", 1) for line in open(a.images) if "=" in line)
    labels = {"usher-zd": "1", "usher-zd.run": a.run_id, "usher-zd.pid": str(os.getpid()),
              "usher-zd.host": open("/proc/sys/kernel/hostname").read().strip()}
    docker = Docker(labels)
    haproxy_bin = subprocess.run(["sh", "-c", "command -v haproxy || echo /usr/sbin/haproxy"],
                                 capture_output=True, text=True).stdout.strip()
    if not free(a.port_base):
        sys.exit(f"harness: 127.0.0.1:{a.port_base} is already taken")

    # Ctrl-C, SIGTERM and the deadline all end in the same cleanup below.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, lambda *_: on_signal("deadline", None))
    signal.alarm(int(a.deadline))

    started = time.time()
    load_start = open("/proc/loadavg").read().split()[:3]
    runs, hap, work = [], None, tempfile.mkdtemp(prefix="usher-zd-")
    try:
        for n, (mode, scenario, rep) in enumerate(plan(a)):
            if hap is None or hap.mode != mode:
                if hap:
                    hap.stop()
                hap = Haproxy(haproxy_bin, a.port_base, mode, work)
                hap.mode = mode
            r = Rollout(a, docker, images).run(hap, scenario, mode, rep, seed=n)
            log(f"  sent {r['sent']}, failed {r['failed']} {r['counts']}, "
                f"docker stop {[s['stop_s'] for s in r['steps']]}s, "
                f"exit {[s['exit_code'] for s in r['steps']]}")
            runs.append(r)
            # One line per run on stdout, for tests/zero_downtime.rs.
            print(f"RESULT scenario={scenario} mode={mode} rep={rep} sent={r['sent']} "
                  f"failed={r['failed']} " + " ".join(f"{k}={v}" for k, v in r["counts"].items())
                  + f" send_lateness_max_s={r['send_lateness_max_s']}"
                  + " signal_s=" + ",".join(str(st["signal_s"]) for st in r["steps"]),
                  flush=True)
    finally:
        signal.alarm(0)
        docker.remove_all()
        if hap:
            hap.stop()
        subprocess.run(["rm", "-rf", work])
    labels = {s: SCENARIOS[s][1].format(short=a.short, drain=a.drain, grace=a.grace)
              for s in SCENARIOS}
    meta = {k: getattr(a, k) for k in ("lag", "rate", "slow_share", "drain", "short", "grace",
                                       "stop_timeout", "warmup", "settle", "tail", "reps",
                                       "extra_reps", "scenarios", "extra_scenarios", "command")}
    meta.update(labels=labels, modes=MODES, started=time.strftime("%Y-%m-%d %H:%M:%S %Z",
                                                                  time.localtime(started)),
                wall_s=round(time.time() - started, 1), cpus=os.cpu_count(),
                loadavg_start=load_start, loadavg_end=open("/proc/loadavg").read().split()[:3],
                nginx=version(["nginx", "-v"]), haproxy=version([haproxy_bin, "-v"]),
                docker=docker.run(["version", "--format", "{{.Server.Version}}"]).stdout.strip(),
                usher=a.usher_version)
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "runs": runs}, f, indent=1)
    med = {}
    for r in runs:
        med.setdefault((r["mode"], r["scenario"]), []).append(r["failed"])
    for (mode, s), v in med.items():
        log(f"{mode:10} {s:14} failed: median {statistics.median(v)}, range {min(v)}-{max(v)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        sys.exit(f"harness: interrupted ({str(e) or 'Ctrl-C'}); containers and haproxy removed")
