#!/usr/bin/env python3
"""Rolling restarts of nginx replicas behind haproxy, under fixed-rate load.

Each run emulates what a Deployment with 2 replicas does by default (maxSurge
1, maxUnavailable 0), STOPS times in a row (each step replaces the older of
the two live replicas): start the replacement, wait until it answers, enable
it in haproxy; then `docker stop` the old replica and only LAG seconds later
disable it in haproxy (the endpoints propagation delay). Each stop of a run
gets its own lag, drawn from a fixed list (--lags, e.g. 0.3,0.5,1,3: every
value as often as the others, in an order shuffled per repetition, the same
for every scenario and path of that repetition). Meanwhile a client sends
requests at a fixed rate through haproxy and classifies every response, and a
prober (kubelet's) sends a GET to each replica directly once a second.

Balancer paths (--paths): http-close (HTTP, a new server connection per
request), http-pool (HTTP, `http-reuse always`: pooled server connections),
tcp-close (L4, `mode tcp`, as kube-proxy forwards connections; a new client
connection per request) and tcp-keepalive (the same with clients that keep
their connections alive). Runs of all scenarios are interleaved, REPS times,
and the results written as JSON (report.py turns them into tables and charts).

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
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SMALL, SLOW, PROBE = "/small", "/slow", "/healthz"
SIZES = {SMALL: 1024, SLOW: 102400}  # what images.sh puts in /srv

# name: (image, label). The drain scenarios all run usher -r TERM:QUIT
# (nginx's graceful stop) with --grace-period GRACE; the init scenarios are
# the comparison of inits (run.sh --inits). Labels are filled in at the end.
SCENARIOS = {
    "nodrain": ("usher", "no drain"),
    "fixed": ("usher", "--drain {drain}"),
    "fixed-long": ("usher", "--drain {drain_long}"),
    "adaptive": ("usher", "--drain {adaptive} (adaptive)"),
    "shell": ("shell", "sh -c 'nginx; echo done' as PID 1, no init"),
    "tini-term": ("tini", "tini, SIGTERM"),
    "tini-quit": ("tini-quit", "tini, STOPSIGNAL SIGQUIT"),
    "usher-nodrain": ("usher", "usher -r TERM:QUIT, no drain"),
    "usher-short": ("usher", "usher --drain {short} -r TERM:QUIT (drain < lag)"),
    "usher-drain": ("usher", "usher --drain {drain} -r TERM:QUIT --grace-period {grace}"),
}
DRAIN_SCENARIOS = ("nodrain", "fixed", "fixed-long", "adaptive")
# Balancer paths: haproxy's mode and server-side connection handling, and the
# client's: "close" opens a connection per request, "keepalive" keeps a pool.
PATHS = {
    "http-close": {"mode": "http", "client": "close",
                   "haproxy": "option http-server-close\n    http-reuse never",
                   "label": "HTTP, a new server connection per request"},
    "http-pool": {"mode": "http", "client": "close",
                  "haproxy": "http-reuse always",
                  "label": "HTTP, pooled server connections (http-reuse always)"},
    "tcp-close": {"mode": "tcp", "client": "close", "haproxy": "",
                  "label": "L4 (mode tcp), a new connection per request"},
    "tcp-keepalive": {"mode": "tcp", "client": "keepalive", "haproxy": "",
                      "label": "L4 (mode tcp), keep-alive clients"},
}
# haproxy variants: retries 0 (every failure reaches the client), haproxy's
# default retries (3, same server), and retries with `option redispatch`.
MODES = {
    "strict": "retries 0",
    "retries": "retries 3",
    "redispatch": "retries 3\n    option redispatch",
}
# A failure is attributed to the stop whose window holds its send time: from
# PRE seconds before that stop (a request in flight when it came: the
# longest takes 1 s) to PRE seconds before the next one. Each step waits for
# the lag and for docker stop, then 2 x --settle and the replacement's
# start (about 0.3 s) pass before the next stop: more than PRE.
PRE = 1.5


def log(msg):
    print(f"harness: {msg}", file=sys.stderr, flush=True)


def now():
    return time.monotonic()


def seconds(d):
    """'500ms', '2s', '1m30s' -> seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h)", d))


def wall(stamp):
    """Docker's RFC 3339 time (2026-12-01T14:28:42.775846473Z) -> epoch seconds."""
    day, _, frac = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(day, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


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

    def label_args(self):
        return [a for k, v in self.labels.items() for a in ("--label", f"{k}={v}")]

    def start(self, image, args):
        cid = self.run(["run", "-d", "--network", "host", *self.label_args(), image, *args]).stdout.strip()
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


def haproxy_config(sock, port_base, path, mode):
    p = PATHS[path]
    servers = "\n".join(
        f"    server s{i} 127.0.0.1:{port_base + i} disabled" for i in range(1, 5))
    return f"""global
    stats socket {sock} mode 600 level admin
    maxconn 4096
defaults
    mode {p['mode']}
    timeout connect 2s
    # Long enough that neither side's idle keep-alive connections time out
    # during a run (nginx keeps them 120 s as well).
    timeout client 120s
    timeout server 120s
    {MODES[mode]}
frontend fe
    bind 127.0.0.1:{port_base}
    default_backend be
backend be
    balance roundrobin
    {p['haproxy']}
{servers}
"""


class Haproxy:
    def __init__(self, binary, port_base, path, mode, work):
        self.path, self.mode = path, mode
        name = f"haproxy-{path}-{mode}"
        self.sock = os.path.join(work, f"{name}.sock")
        self.cfg = os.path.join(work, f"{name}.cfg")
        self.port = port_base
        with open(self.cfg, "w") as f:
            f.write(haproxy_config(self.sock, port_base, path, mode))
        self.errlog = open(os.path.join(work, f"{name}.log"), "w")
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
# the load: fixed rate, every response checked; and the prober


def parse_head(head):
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1])
    hdr = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
    return lines[0], status, hdr


class Client:
    """Requests through the balancer. kind "close": a new connection per
    request (Connection: close). kind "keepalive": a pool of persistent
    connections like an HTTP client library's: a request takes the most
    recently used idle connection, skipping those the server has closed
    (EOF already seen), or opens a new one when none is idle; a connection
    goes back to the pool after a complete response. A request that fails
    on a reused connection before any response byte is marked `reused`
    (clients that retry such requests would hide it)."""

    def __init__(self, port, kind):
        self.port, self.kind = port, kind
        self.idle = []
        self.opened = 0

    async def connection(self):
        while self.kind == "keepalive" and self.idle:
            reader, writer = self.idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            return reader, writer, True
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 5)
        self.opened += 1
        return reader, writer, False

    async def request(self, path, t0, out):
        rec = {"t": t0, "path": path}
        try:
            reader, writer, reused = await self.connection()
        except (OSError, asyncio.TimeoutError) as e:
            rec.update(kind="conn_error", detail=f"connect: {type(e).__name__}", end=now())
            out.append(rec)
            return
        rec["reused"] = reused
        body, keep = 0, False
        try:
            close = "Connection: close\r\n" if self.kind == "close" else ""
            writer.write(f"GET {path} HTTP/1.1\r\nHost: zd\r\n{close}\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
            line, status, hdr = parse_head(head)
            rec.update(status=status, server=hdr.get("x-port"))
            want = int(hdr.get("content-length", -1))
            if 200 <= status < 300:
                while body < SIZES[path]:
                    chunk = await asyncio.wait_for(reader.read(min(65536, SIZES[path] - body)), 20)
                    if not chunk:
                        break
                    body += len(chunk)
                full = want == SIZES[path] and body == want
                rec.update(kind="ok" if full else "cut", detail=None if full else f"{body}/{want} bytes")
                keep = full and hdr.get("connection", "").lower() != "close"
            elif status >= 500:
                rec.update(kind="http_5xx", detail=line)
            else:
                rec.update(kind="other", detail=line)
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
            if keep and self.kind == "keepalive":
                self.idle.append((reader, writer))
            else:
                writer.close()
        rec["end"] = now()
        out.append(rec)

    def close_all(self):
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def probe(port, out):
    """kubelet's httpGet probe: a new connection, 1 s timeout, 2xx/3xx = success."""
    rec = {"t": now(), "port": port}
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
        writer.write(f"GET {PROBE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "User-Agent: kube-probe/1.27\r\nConnection: close\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 1)
        rec["ok"] = 200 <= parse_head(head)[1] < 400
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
        rec["ok"] = False
    finally:
        if writer:
            writer.close()
    out.append(rec)


class Load:
    """Sends `rate` requests/s in a thread until stopped; `slow_share` of them
    /slow. Probes every port in `probe_ports` every `probe_every` seconds."""

    def __init__(self, port, rate, slow_share, seed, client, probe_every):
        self.rate, self.slow_share = rate, slow_share
        self.client = Client(port, client)
        self.probe_every = probe_every
        self.probe_ports = set()  # changed by the rollout's thread
        self.rng = random.Random(seed)
        self.records, self.probes = [], []
        self.stop_at = None
        self.lag_max = 0.0  # worst lateness of a send against its schedule
        self.thread = threading.Thread(target=lambda: asyncio.run(self.main()), daemon=True)

    def start(self):
        self.thread.start()

    async def prober(self, tasks):
        start, i = now(), 0
        while self.stop_at is None:
            for port in sorted(self.probe_ports):
                task = asyncio.create_task(probe(port, self.probes))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i += 1
            await asyncio.sleep(max(0.0, start + i * self.probe_every - now()))

    async def main(self):
        tasks = set()
        if self.probe_every > 0:
            prober = asyncio.create_task(self.prober(tasks))
        start = now()
        i = 0
        while self.stop_at is None or start + i / self.rate < self.stop_at:
            due = start + i / self.rate
            delay = due - now()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lag_max = max(self.lag_max, now() - due)
            path = SLOW if self.rng.random() < self.slow_share else SMALL
            task = asyncio.create_task(self.client.request(path, now(), self.records))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if self.probe_every > 0:
            await prober
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        self.client.close_all()

    def finish(self):
        self.stop_at = now()
        self.thread.join(60)
        if self.thread.is_alive():
            raise RuntimeError("the load client did not finish within 60s")
        return self.records


# ---------------------------------------------------------------------------
# what a replica's log says


def answers(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: zd\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


SIGNAL_SEEN = ("stop received", "(SIGTERM) received", "(SIGQUIT) received")
USHER_T = re.compile(r"^usher: \+([\d.]+)s ")


def read_log(lines, wall_stop):
    """What a replica's `docker logs --timestamps` says, relative to the wall
    time of its `docker stop` (None: it was not stopped):
    signal_s     the first line of PID 1 or nginx saying it got the stop
                 signal (None for a shell, which logs nothing); a late
                 signal shortens the effective lag, which runs from docker stop
    forwarded_s  usher's `forwarded` line (the stop signal reaching nginx)
    held_s       from usher's `stop received` to its `forwarded`, on usher's
                 own clock: how long it held the signal
    served, conns  requests of the load the replica served (nginx's access
                 log, the prober's left out), on how many connections
    last_request_s  when the last of them arrived (end - request time)
    after_stop   how many arrived after docker stop; probes: the prober's"""
    out = {"signal_s": None, "forwarded_s": None, "held_s": None}
    conns, served, probes, after, last = set(), 0, 0, 0, None
    seen, stop_t, other = [], None, []
    for line in lines:
        stamp, _, text = line.partition(" ")
        if text.startswith("zd "):
            f = text.split()
            if len(f) < 7:
                continue
            if f[6] == PROBE:
                probes += 1
                continue
            served += 1
            conns.add(f[3])
            arrived = float(f[1]) - float(f[2])
            last = arrived if last is None else max(last, arrived)
            if wall_stop is not None and arrived >= wall_stop:
                after += 1
            continue
        other.append(line)
        if wall_stop is None:
            continue
        try:
            t = wall(stamp) - wall_stop
        except ValueError:
            continue
        if any(s in text for s in SIGNAL_SEEN):
            seen.append(t)
        m = USHER_T.match(text)
        if m and "info: stop received" in text and stop_t is None:
            stop_t = float(m.group(1))
        if m and "info: forwarded:" in text and stop_t is not None and out["forwarded_s"] is None:
            out["forwarded_s"] = round(t, 3)
            out["held_s"] = round(float(m.group(1)) - stop_t, 3)
    if seen:
        out["signal_s"] = round(min(seen), 3)
    out.update(served=served, conns=len(conns), probes_served=probes, after_stop=after,
               last_request_s=None if last is None or wall_stop is None else round(last - wall_stop, 3),
               logs=other[-12:])
    return out


# ---------------------------------------------------------------------------
# one run: STOPS rolling steps


class Rollout:
    def __init__(self, args, docker, images):
        self.a, self.docker, self.images = args, docker, images

    def usher_options(self, scenario):
        a = self.a
        grace = ["--grace-period", a.grace]
        return {"nodrain": grace,
                "fixed": ["--drain", a.drain, *grace],
                "fixed-long": ["--drain", a.drain_long, *grace],
                "adaptive": ["--drain", a.adaptive, *grace],
                "usher-nodrain": [],
                "usher-short": ["--drain", a.short],
                "usher-drain": ["--drain", a.drain, "--grace-period", a.grace]}[scenario]

    def command(self, scenario, port):
        nginx = ["nginx", "-e", "stderr", "-c", f"/etc/nginx/{port}.conf", "-g", "daemon off;"]
        if scenario == "shell":
            return [f"nginx -e stderr -c /etc/nginx/{port}.conf -g 'daemon off;'; echo done"]
        if scenario.startswith("tini"):
            return nginx
        return [*self.usher_options(scenario), "-r", "TERM:QUIT", "--", *nginx]

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

    def logs(self, cid):
        p = self.docker.run(["logs", "--timestamps", cid], check=False)
        return (p.stdout + p.stderr).splitlines()

    def stop_step(self, hap, old_cid, old_slot, step, lag):
        """docker stop the old replica; disable it in haproxy LAG seconds later."""
        result = {}

        def stop():
            t = now()
            p = self.docker.run(["stop", "-t", str(self.a.stop_timeout), old_cid],
                                limit=self.a.stop_timeout + 60, check=False)
            result.update(took=now() - t, rc=p.returncode, err=p.stderr.strip())

        step["lag"] = lag
        step["t_stop"], wall_stop = now(), time.time()
        th = threading.Thread(target=stop)
        th.start()
        time.sleep(max(0.0, step["t_stop"] + lag - now()))
        hap.set_state(old_slot, "maint")
        step["t_disable"] = now()
        th.join(self.a.stop_timeout + 90)
        if th.is_alive() or result.get("rc") != 0:
            raise RuntimeError(f"docker stop {old_cid[:12]} failed: {result}")
        state = self.docker.run(["inspect", "-f", "{{.State.ExitCode}} {{.State.FinishedAt}}",
                                 old_cid]).stdout.split()
        finished = None
        try:
            finished = round(wall(state[1]) - wall_stop, 3)
        except (ValueError, IndexError):
            pass
        step.update(stop_s=round(result["took"], 3), finished_s=finished, exit_code=int(state[0]),
                    **read_log(self.logs(old_cid), wall_stop))

    def run(self, hap, scenario, path, mode, rep, seed, lags):
        a = self.a
        log(f"run: {scenario} / {path} / haproxy {mode} / rep {rep} / lags {lags}")
        for slot in range(1, 5):
            hap.set_state(slot, "maint")
        live = {}  # slot -> container id, oldest first
        free_slots = [3, 4]
        replicas = []  # port, t_start, t_stop, t_gone: for the prober's results
        load = Load(hap.port, a.rate, a.slow_share, seed, PATHS[path]["client"], a.probe_every)

        def start(slot):
            t = now()
            live[slot] = self.replica(scenario, slot)
            replicas.append({"port": a.port_base + slot, "t_start": t, "t_stop": None, "t_gone": None})
            load.probe_ports.add(a.port_base + slot)

        steps, survivors = [], []
        try:
            start(1)
            start(2)
            for slot in (1, 2):
                hap.set_state(slot, "ready")
            t_load = now()
            load.start()
            time.sleep(a.warmup)
            for lag in lags:
                old_slot, new_slot = next(iter(live)), free_slots.pop(0)
                step = {"old": f"s{old_slot}", "new": f"s{new_slot}"}
                start(new_slot)
                hap.set_state(new_slot, "ready")
                step["t_ready"] = now()
                time.sleep(a.settle)
                old_cid = live.pop(old_slot)
                rep_old = next(r for r in replicas if r["port"] == a.port_base + old_slot
                               and r["t_gone"] is None)
                rep_old["t_stop"] = now()
                try:
                    self.stop_step(hap, old_cid, old_slot, step, lag)
                finally:
                    load.probe_ports.discard(a.port_base + old_slot)
                    rep_old["t_gone"] = now()
                    self.docker.remove([old_cid])
                free_slots.append(old_slot)
                steps.append(step)
                time.sleep(a.settle)
            time.sleep(a.tail)
        finally:
            records = load.finish() if load.thread.ident else []
            survivors = [read_log(self.logs(cid), None) for cid in live.values()]
            self.docker.remove(list(live.values()))
        return summarize(scenario, path, mode, rep, records, steps, t_load, load, replicas, survivors)


def summarize(scenario, path, mode, rep, records, steps, t_load, load, replicas, survivors):
    counts = {k: 0 for k in ("ok", "http_5xx", "conn_error", "cut", "other")}
    failures = []
    stops = [s["t_stop"] for s in steps]
    for s in steps:
        s["failed"] = 0
    outside = 0
    for r in records:
        counts[r["kind"]] += 1
        if r["kind"] == "ok":
            continue
        # The stop whose window [its stop - PRE, the next stop - PRE) holds
        # the send time; t_rel is negative for a request in flight at the stop.
        i = max((k for k in range(len(stops)) if r["t"] >= stops[k] - PRE), default=None)
        if i is None:
            outside += 1
            i = 0
        steps[i]["failed"] += 1
        failures.append({"step": i + 1, "lag": steps[i]["lag"],
                         "t_rel": round(r["t"] - stops[i], 3),
                         "end_rel": round(r.get("end", r["t"]) - stops[i], 3),
                         "kind": r["kind"], "path": r["path"], "reused": r.get("reused"),
                         "server": r.get("server"), "detail": r.get("detail")})
    for s in steps:
        for k in ("t_ready", "t_stop", "t_disable"):
            s[k] = round(s[k] - t_load, 3)
    # What retries turn failures into: time. The slowest small-page answers.
    small = sorted(r["end"] - r["t"] for r in records if r["kind"] == "ok" and r["path"] == SMALL)
    p99 = small[int(0.99 * (len(small) - 1))] if small else None
    # The prober: a failure while its replica had not been stopped yet is a
    # real one; after the stop it is the app closing, as it should.
    probes = {"sent": len(load.probes), "failed_before_stop": 0, "failed_after_stop": 0}
    for p in load.probes:
        if p["ok"]:
            continue
        rep_ = [r for r in replicas if r["port"] == p["port"] and r["t_start"] <= p["t"]
                and (r["t_gone"] is None or p["t"] <= r["t_gone"])]
        after = any(r["t_stop"] is not None and p["t"] >= r["t_stop"] for r in rep_)
        probes["failed_after_stop" if after else "failed_before_stop"] += 1
    # How many requests shared a server-side connection (nginx's log).
    served = sum(s["served"] for s in steps) + sum(s["served"] for s in survivors)
    conns = sum(s["conns"] for s in steps) + sum(s["conns"] for s in survivors)
    return {"scenario": scenario, "path": path, "mode": mode, "rep": rep, "sent": len(records),
            "failed": len(records) - counts["ok"], "counts": counts,
            "failed_outside_stops": outside,
            "reused_conn_failures": sum(1 for f in failures if f["reused"]),
            "small_ok_p99_s": p99 and round(p99, 4), "small_ok_max_s": round(small[-1], 4) if small else None,
            "send_lateness_max_s": round(load.lag_max, 3),
            "client_connections": load.client.opened,
            "server_requests": served, "server_connections": conns,
            "probes": probes, "steps": steps,
            "failures": sorted(failures, key=lambda f: (f["step"], f["t_rel"]))}


# ---------------------------------------------------------------------------


def lag_order(lags, stops, rep):
    """The lags of one run's stops: the list repeated to STOPS values, in an
    order shuffled per repetition (the same for every scenario and path)."""
    order = [lags[i % len(lags)] for i in range(stops)]
    random.Random(f"lags-{rep}").shuffle(order)
    return order


def plan(args):
    """(path, mode, scenario, rep) in run order: scenarios interleaved within a
    path, paths within a repetition; then haproxy's retries variants."""
    runs = []
    for rep in range(1, args.reps + 1):
        for path in args.paths:
            runs += [(path, "strict", s, rep) for s in args.scenarios]
    for rep in range(1, args.extra_reps + 1):
        for mode in ("retries", "redispatch"):
            runs += [(args.paths[0], mode, s, rep) for s in args.extra_scenarios]
    return runs


def preflight(args, docker, images, scenarios):
    """Which usher scenarios this usher refuses (a usage error, exit 2): the
    adaptive drain before the feature exists. {scenario: usher's message}."""
    refused = {}
    r = Rollout(args, docker, images)
    for s in scenarios:
        if SCENARIOS[s][0] != "usher":
            continue
        p = docker.run(["run", "--rm", "--network", "none", *docker.label_args(), images["usher"],
                        *r.usher_options(s), "-r", "TERM:QUIT", "--", "nginx", "-v"],
                       limit=60, check=False)
        if p.returncode == 2 and "nginx version" not in p.stderr:
            msg = next((line for line in p.stderr.splitlines() if "error" in line), p.stderr.strip())
            refused[s] = msg.strip()
        elif p.returncode != 0:
            raise RuntimeError(f"usher {' '.join(r.usher_options(s))} -- nginx -v: exit "
                               f"{p.returncode}: {p.stderr.strip()}")
    return refused


def version(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def fmt(v):
    return "None" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", required=True, help="NAME=ID lines from images.sh")
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--run-id", required=True, help="the RUN_ID given to images.sh")
    ap.add_argument("--port-base", type=int, default=18480)
    ap.add_argument("--lags", default="0.3,0.5,1,3",
                    help="balancer lags in seconds (docker stop -> disabled in haproxy), "
                         "spread over the stops of a run")
    ap.add_argument("--stops", type=int, default=0, help="stops per run (default: 2 per lag)")
    ap.add_argument("--paths", default="http-close,http-pool,tcp-close,tcp-keepalive")
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second")
    ap.add_argument("--slow-share", type=float, default=0.25, help="share of /slow requests")
    ap.add_argument("--drain", default="2s", help="the fixed drain")
    ap.add_argument("--drain-long", default="", help="a fixed drain for the worst lag "
                    "(default: the longest lag + 500ms)")
    ap.add_argument("--adaptive", default="0s..10s", help="the adaptive drain, MIN..MAX")
    ap.add_argument("--short", default="500ms", help="the drain shorter than the lag (inits)")
    ap.add_argument("--grace", default="", help="usher's --grace-period (default: MAX of the "
                    "adaptive drain + 2s: it covers the longest response, 1 s)")
    ap.add_argument("--stop-timeout", type=int, default=0,
                    help="docker stop -t (default: the grace period + 3 s)")
    ap.add_argument("--probe-every", type=float, default=1.0,
                    help="seconds between the prober's GETs to each replica (0: no prober)")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--settle", type=float, default=0.75, help="pause around each stop")
    ap.add_argument("--tail", type=float, default=1.5, help="load after the last step")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--scenarios", default=",".join(DRAIN_SCENARIOS))
    ap.add_argument("--extra-reps", type=int, default=0, help="runs per haproxy retries variant")
    ap.add_argument("--extra-scenarios", default="tini-term,usher-nodrain")
    ap.add_argument("--deadline", type=float, default=3600, help="give up after this many seconds")
    ap.add_argument("--command", default="", help="the command line to record")
    ap.add_argument("--usher-version", default="?", help="usher's version, to record")
    a = ap.parse_args()
    a.lags = [float(x) for x in a.lags.split(",") if x]
    a.stops = a.stops or 2 * len(a.lags)
    a.paths = [p for p in a.paths.split(",") if p]
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    a.extra_scenarios = [s for s in a.extra_scenarios.split(",") if s] if a.extra_reps else []
    for s in a.scenarios + a.extra_scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
    for p in a.paths:
        if p not in PATHS:
            ap.error(f"unknown path {p!r}; known: {', '.join(PATHS)}")
    if ".." not in a.adaptive:
        ap.error("--adaptive takes MIN..MAX")
    if not a.drain_long:
        a.drain_long = f"{round(1000 * max(a.lags) + 500)}ms"
    if not a.grace:
        a.grace = f"{round(seconds(a.adaptive.split('..')[1]) + 2)}s"
    if not a.stop_timeout:
        a.stop_timeout = int(seconds(a.grace)) + 3
    images = dict(line.strip().split("=", 1) for line in open(a.images) if "=" in line)
    labels = {"usher-zd": "1", "usher-zd.run": a.run_id, "usher-zd.pid": str(os.getpid()),
              "usher-zd.host": open("/proc/sys/kernel/hostname").read().strip()}
    docker = Docker(labels)
    haproxy_bin = subprocess.run(["sh", "-c", "command -v haproxy || echo /usr/sbin/haproxy"],
                                 capture_output=True, text=True).stdout.strip()
    if 2 * a.settle < PRE:
        ap.error(f"--settle below {PRE / 2} s blurs which stop a failure belongs to")
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
        refused = preflight(a, docker, images, a.scenarios + a.extra_scenarios)
        for s, why in refused.items():
            log(f"SKIPPING {s}: this usher refuses {' '.join(Rollout(a, docker, images).usher_options(s))}: {why}")
            print(f"UNSUPPORTED scenario={s} why={json.dumps(why)}", flush=True)
        for n, (path, mode, scenario, rep) in enumerate(plan(a)):
            if scenario in refused:
                continue
            if hap is None or (hap.path, hap.mode) != (path, mode):
                if hap:
                    hap.stop()
                hap = Haproxy(haproxy_bin, a.port_base, path, mode, work)
            lags = lag_order(a.lags, a.stops, rep)
            loadavg = open("/proc/loadavg").read().split()[0]
            r = Rollout(a, docker, images).run(hap, scenario, path, mode, rep, n, lags)
            r["loadavg"] = [loadavg, open("/proc/loadavg").read().split()[0]]
            log(f"  sent {r['sent']}, failed {r['failed']} {r['counts']}, "
                f"per stop {[s['failed'] for s in r['steps']]}, lags {lags}, "
                f"docker stop {[s['stop_s'] for s in r['steps']]}s, "
                f"forwarded {[s['forwarded_s'] for s in r['steps']]}s, "
                f"exit {sorted({s['exit_code'] for s in r['steps']})}, "
                f"server requests/connections {r['server_requests']}/{r['server_connections']}, "
                f"client connections {r['client_connections']}, probes {r['probes']}")
            runs.append(r)
            # One line per run and one per stop on stdout, for tests/zero_downtime.rs.
            print(f"RESULT scenario={scenario} path={path} mode={mode} rep={rep} sent={r['sent']} "
                  f"failed={r['failed']} " + " ".join(f"{k}={v}" for k, v in r["counts"].items())
                  + f" send_lateness_max_s={r['send_lateness_max_s']}"
                  + f" server_requests={r['server_requests']}"
                  + f" server_connections={r['server_connections']}"
                  + " signal_s=" + ",".join(str(st["signal_s"]) for st in r["steps"]),
                  flush=True)
            for k, st in enumerate(r["steps"], 1):
                print(f"STOP scenario={scenario} path={path} mode={mode} rep={rep} step={k} "
                      + " ".join(f"{key}={fmt(st[key])}" for key in
                                 ("lag", "failed", "signal_s", "forwarded_s", "held_s",
                                  "last_request_s", "stop_s", "finished_s", "exit_code")),
                      flush=True)
    finally:
        signal.alarm(0)
        docker.remove_all()
        if hap:
            hap.stop()
        subprocess.run(["rm", "-rf", work])
    labels = {s: SCENARIOS[s][1].format(short=a.short, drain=a.drain, grace=a.grace,
                                        drain_long=a.drain_long, adaptive=a.adaptive)
              for s in SCENARIOS}
    meta = {k: getattr(a, k) for k in ("lags", "stops", "paths", "rate", "slow_share", "drain",
                                       "drain_long", "adaptive", "short", "grace",
                                       "stop_timeout", "probe_every", "warmup", "settle", "tail",
                                       "reps", "extra_reps", "scenarios", "extra_scenarios",
                                       "command")}
    if len(a.lags) == 1:
        meta["lag"] = a.lags[0]  # what the report of the init comparison reads
    meta.update(labels=labels, modes=MODES, refused=refused, pre_s=PRE,
                path_labels={p: PATHS[p]["label"] for p in PATHS},
                haproxy_paths={p: PATHS[p]["haproxy"] for p in PATHS},
                started=time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
                wall_s=round(time.time() - started, 1), cpus=os.cpu_count(),
                loadavg_start=load_start, loadavg_end=open("/proc/loadavg").read().split()[:3],
                nginx=version(["nginx", "-v"]), haproxy=version([haproxy_bin, "-v"]),
                docker=docker.run(["version", "--format", "{{.Server.Version}}"]).stdout.strip(),
                usher=a.usher_version)
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "runs": runs}, f, indent=1)
    med = {}
    for r in runs:
        med.setdefault((r["path"], r["mode"], r["scenario"]), []).append(r["failed"])
    for (path, mode, s), v in med.items():
        log(f"{path:13} {mode:10} {s:14} failed: median {statistics.median(v)}, "
            f"range {min(v)}-{max(v)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        sys.exit(f"harness: interrupted ({str(e) or 'Ctrl-C'}); containers and haproxy removed")
