#!/usr/bin/env python3
"""Turns bench.py's JSON results into docs/benchmarks.md and an SVG chart.

    python3 bench/report.py bench/out/results-full.json \\
        --doc docs/benchmarks.md --chart docs/img/benchmarks.svg

Standard library only: the chart is SVG written by hand.
"""

import argparse
import json
import os
import time
from html import escape

NAMES = ["usher", "tini", "tini-static", "dumb-init", "catatonit"]
REF = "tini"  # ratios are to the Debian default, dynamically linked tini

# The targets from the issue, in bytes where they are sizes.
CATATONIT_BYTES = 699_160
TINI_STATIC_BYTES = 708_080
STRETCH_BYTES = 512 * 1024
SIZE_TARGET_BYTES = 448 * 1024  # the performance issue's target, x86_64
TIMER_P99_MS = 1.0
# A shutdown run counts as "calm" when, just before its SIGTERM, the machine
# had at most this many tasks and this many runnable ones.
CALM_TASKS = 1000
CALM_RUNNABLE = 4


def pct(values, p):
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ---------------------------------------------------------------- formatting

def n0(v):
    return "n/a" if v is None else f"{v:,.0f}"


def us(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"


def ms(v):
    return "n/a" if v is None else f"{v:.2f}"


def ratio(v, ref):
    if v is None or ref is None or ref == 0:
        return "—"
    return f"{v / ref:.2f}×"


def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def table(header, rows, align=None):
    align = align or ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---:" if a == "c" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def verdict(ok):
    return "**met**" if ok else "**missed**"


# ---------------------------------------------------------------- chart

USHER_COLORS = ["#d9480f", "#ffa94d", "#ffd8a8"]
PEER_COLORS = ["#1971c2", "#74c0fc", "#c5e3fb"]


def panel(x, y, w, title, cats, series, fmt, ref_line=None, note=None, all_usher=False):
    """A horizontal grouped bar chart; returns (svg parts, height). A series
    is (label, values) or (label, values, ranges): each range a (min, max)
    drawn as a whisker over its bar."""
    series = [(sr[0], sr[1], sr[2] if len(sr) > 2 else [None] * len(sr[1])) for sr in series]
    parts = []
    label_w, value_w = 118, 62
    bar_h, gap = 11, 7
    top = 38 + (16 if len(series) > 1 else 0)
    plot_w = w - label_w - value_w
    vals = [v for _, vs, _ in series for v in vs if v is not None]
    vals += [hi for _, _, rs in series for r in rs if r for hi in r[1:]]
    vmax = max(vals + [ref_line[0] if ref_line else 0] + [1e-9])
    parts.append(f'<text x="{x}" y="{y + 16}" class="t">{escape(title)}</text>')
    if note:
        parts.append(f'<text x="{x}" y="{y + 29}" class="n">{escape(note)}</text>')
    if len(series) > 1:
        lx = x + label_w
        for i, (label, _, _) in enumerate(series):
            colors = USHER_COLORS if all_usher else PEER_COLORS
            parts.append(f'<rect x="{lx}" y="{y + top - 20}" width="10" height="10" '
                         f'fill="{colors[i % 3]}"/>')
            parts.append(f'<text x="{lx + 14}" y="{y + top - 11}" class="n">{escape(label)}</text>')
            lx += 26 + 6 * len(label)
    cy = y + top
    for ci, cat in enumerate(cats):
        group_h = len(series) * bar_h
        is_usher = all_usher or "usher" in cat
        parts.append(f'<text x="{x + label_w - 6}" y="{cy + group_h / 2 + 4}" '
                     f'class="{"lu" if is_usher else "l"}" text-anchor="end">{escape(cat)}</text>')
        for si, (_, vs, rs) in enumerate(series):
            v, rng = vs[ci], rs[ci]
            by = cy + si * bar_h
            colors = USHER_COLORS if is_usher else PEER_COLORS
            if v is None:
                parts.append(f'<text x="{x + label_w + 2}" y="{by + 9}" class="n">n/a</text>')
                continue
            bw = max(plot_w * v / vmax, 0.5 if v > 0 else 0)
            parts.append(f'<rect x="{x + label_w}" y="{by}" width="{bw:.1f}" height="{bar_h - 1}" '
                         f'fill="{colors[si % 3]}"/>')
            end = bw
            if rng:
                lo = x + label_w + max(plot_w * rng[0] / vmax, 0)
                hi = x + label_w + max(plot_w * rng[1] / vmax, 0)
                mid = by + (bar_h - 1) / 2
                parts.append(f'<path d="M{lo:.1f} {mid - 3:.1f}v6M{lo:.1f} {mid:.1f}H{hi:.1f}'
                             f'M{hi:.1f} {mid - 3:.1f}v6" stroke="#212529" fill="none"/>')
                end = max(end, hi - x - label_w)
            parts.append(f'<text x="{x + label_w + end + 4:.1f}" y="{by + 9}" class="v">'
                         f'{escape(fmt(v))}</text>')
        cy += group_h + gap
    if ref_line:
        rv, rlabel = ref_line
        rx = x + label_w + plot_w * rv / vmax
        parts.append(f'<line x1="{rx:.1f}" y1="{y + top - 4}" x2="{rx:.1f}" y2="{cy - gap + 2}" '
                     f'stroke="#c92a2a" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{rx + 3:.1f}" y="{cy + 8}" class="r">{escape(rlabel)}</text>')
        cy += 12
    parts.append(f'<line x1="{x + label_w}" y1="{y + top - 4}" x2="{x + label_w}" '
                 f'y2="{cy - gap + 2}" stroke="#868e96"/>')
    return parts, cy - y + 10


def chart(r):
    W, col_w, pad = 980, 470, 16
    cells = []
    size = r.get("size", {})
    if size:
        cells.append(("Stripped binary size (KiB)", NAMES,
                      [("bytes", [get(size, n, "stripped_bytes") and size[n]["stripped_bytes"] / 1024
                                  for n in NAMES])],
                      lambda v: f"{v:,.0f}", (SIZE_TARGET_BYTES / 1024, "448 KiB target"),
                      "lower is better; tini and dumb-init are dynamic"))
    if "startup" in r:
        cells.append(("Start-up overhead, p50 (µs)", NAMES,
                      [("not PID 1 (host)", [get(r, "startup", "inits", n, "overhead_p50_us") for n in NAMES]),
                       ("PID 1 (new PID ns)", [get(r, "startup_pid1", "inits", n, "overhead_p50_us")
                                               for n in NAMES])],
                      us, None, "INIT true minus true; lower is better"))
    sc = get(r, "startup_scaling", "extras")
    if sc:
        cols = [k for k in next(iter(sc.values())) if k != "processes"]
        cells.append(("Start-up overhead p50 vs processes on the machine (ms)", cols,
                      [(f"+{int(e):,} processes", [sc[e][c] / 1000 for c in cols]) for e in sc],
                      lambda v: f"{v:,.1f}", None, "extra idle processes added; flat is better"))
    idle = get(r, "idle", "inits") or {}
    inames = NAMES + (["usher (draining)"] if "usher (draining)" in idle else [])
    if idle:
        cells.append(("Idle memory (KiB)", inames,
                      [("VmRSS", [get(idle, n, "memory", "rss_kib") for n in inames]),
                       ("Pss", [get(idle, n, "memory", "pss_kib") for n in inames])],
                      n0, None, "init alone, its app asleep; lower is better"))
        w = r["idle"]["window_s"]
        cells.append((f"Idle wake-ups and syscalls in {w:.0f} s", inames,
                      [("context switches", [get(idle, n, "wakeups") for n in inames]),
                       ("syscalls", [get(idle, n, "syscalls") for n in inames])],
                      n0, None, "0 is the goal"))
    if "signals" in r:
        sig = get(r, "signals", "inits")
        passes = get(r, "signals", "passes") or 1
        over = lambda n, q: get(sig, n, f"over_floor_{q}_over_passes")
        series = []
        for q in ("p50", "p99"):
            vals = [get(sig, n, f"over_floor_{q}_us") for n in NAMES]
            ranges = [(over(n, q)["min"], over(n, q)["max"]) if over(n, q) else None for n in NAMES]
            series.append((f"{q} above the floor", vals, ranges))
        cells.append(("Signal forwarding latency above the floor (µs)", NAMES, series, us, None,
                      f"minus a signal sent straight to the app; median of {passes} passes, "
                      f"whiskers: range; lower is better"))
    reap = get(r, "reaping", "modes") or {}
    if reap:
        n = r["reaping"]["orphans"]
        cells.append((f"Reaping {n:,} zombies handed over at once (k/s)", NAMES,
                      [("median", [(get(reap, "flood", "inits", x, "rate_per_s", "p50") or 0) / 1000
                                   or None for x in NAMES])],
                      lambda v: f"{v:,.1f}", None, "orphans reaped per second; higher is better"))
        cells.append((f"{n:,} orphans exiting at once: peak unreaped", NAMES,
                      [("median", [get(reap, "storm", "inits", x, "peak_unreaped", "p50") for x in NAMES])],
                      n0, None, "noisy: set by the scheduler; lower is better"))
    sd = get(r, "shutdown", "modes") or {}
    if sd:
        cats, p50, p99 = [], [], []
        k = f"+{(get(r, 'shutdown', 'crowd') or 0) / 1000:g}k"
        for mode, label in (("host", "host"), ("pid1", "PID 1"),
                            ("host_crowd", f"host {k}"), ("pid1_crowd", f"PID 1 {k}")):
            if mode not in sd:
                continue
            for kind in ("drain", "deadline"):
                cats.append(f"{kind}, {label}")
                p50.append(get(sd, mode, f"{kind}_error_ms", "p50"))
                p99.append(get(sd, mode, f"{kind}_error_ms", "p99"))
        cells.append(("usher's shutdown timers: error (ms)", cats,
                      [("p50", p50), ("p99", p99)], ms, (TIMER_P99_MS, f"{TIMER_P99_MS:g} ms target"),
                      f"--drain {r['shutdown']['drain_ms']}ms, --grace-period "
                      f"{r['shutdown']['grace_ms']}ms; host: not PID 1; {k}: that many more "
                      "processes; late is positive", True))
    parts, y, col_h = [], 64, [64, 64]
    for i, cell in enumerate(cells):
        col = i % 2
        p, h = panel(pad + col * (col_w + 10), col_h[col], col_w, *cell)
        parts += p
        col_h[col] += h + 8
        if col == 1:
            col_h = [max(col_h)] * 2
    height = max(col_h) + 30
    env = r["env"]
    sub = (f"{r['mode']} run, {env['date_utc']}: {env['cpu_model']}, {env['nproc']} CPUs, "
           f"Linux {env['kernel']}; load average at start "
           f"{(env.get('loadavg_at_command_start') or env['loadavg_start'])[0]:.2f}, "
           f"CPU busy before start {env.get('cpu_busy_pct_before', '?')}%")
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
        f'viewBox="0 0 {W} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
        "<style>.t{font-size:13px;font-weight:bold;fill:#212529}.n{font-size:10px;fill:#495057}"
        ".l{font-size:11px;fill:#343a40}.lu{font-size:11px;fill:#d9480f;font-weight:bold}"
        ".v{font-size:10px;fill:#212529}.r{font-size:10px;fill:#c92a2a}"
        ".h{font-size:17px;font-weight:bold;fill:#212529}</style>",
        f'<rect width="{W}" height="{height}" fill="#ffffff"/>',
        f'<text x="{pad}" y="26" class="h">usher vs tini, tini-static, dumb-init, catatonit</text>',
        f'<text x="{pad}" y="44" class="n">{escape(sub)}</text>',
        f'<text x="{pad}" y="{height - 10}" class="n">Generated by {escape(r["command"])} '
        f'(bench/report.py). usher in orange.</text>',
    ]
    return "\n".join(head + parts + ["</svg>"]) + "\n"


# ---------------------------------------------------------------- document

def targets(r):
    rows = []
    size = r.get("size", {})
    u = get(size, "usher", "stripped_bytes")
    if u is not None:
        for label, limit in (("catatonit", get(size, "catatonit", "stripped_bytes") or CATATONIT_BYTES),
                             ("tini-static", get(size, "tini-static", "stripped_bytes") or TINI_STATIC_BYTES)):
            rows.append((f"Size < {label} ({limit:,} B)", f"{u:,} B", u < limit,
                         f"{limit - u:,} B to spare" if u < limit else f"{u - limit:,} B over"))
        for label, limit in (("512 KiB", STRETCH_BYTES), ("448 KiB", SIZE_TARGET_BYTES)):
            rows.append((f"Size ≤ {label} ({limit:,} B)", f"{u:,} B", u <= limit,
                         f"{limit - u:,} B to spare" if u <= limit else f"{u - limit:,} B over"))
        rows.append(("Static binary", get(size, "usher", "file") or "?", bool(get(size, "usher", "static")), ""))
    for key, label in (("startup", "not PID 1, `usher -s`"), ("startup_pid1", "PID 1 of a new PID namespace")):
        a = get(r, key, "inits", "usher", "overhead_p50_us")
        b = get(r, key, "inits", "tini-static", "overhead_p50_us")
        if a is not None:
            rows.append((f"Start-up overhead p50 ≤ tini-static's ({label})",
                         f"{us(a)} µs vs {us(b)} µs", a <= b,
                         "" if a <= b else f"{us(a - b)} µs slower ({a / b:.1f}×)" if b > 0
                         else f"{us(a - b)} µs slower"))
    idle = get(r, "idle", "inits")
    if idle:
        a, b = idle["usher"]["memory"]["rss_kib"], idle["tini-static"]["memory"]["rss_kib"]
        rows.append(("Idle VmRSS ≤ tini-static's", f"{a:,} KiB vs {b:,} KiB", a <= b,
                     f"{b - a:,} KiB less" if a <= b else f"{a - b:,} KiB more"))
        w = r["idle"]["window_s"]
        for name, label in (("usher", "idle"), ("usher (draining)", "idle during a drain")):
            if name in idle:
                e = idle[name]
                ok = e["wakeups"] == 0 and e["syscalls"] == 0
                rows.append((f"0 wake-ups and 0 syscalls, {label}",
                             f"{e['wakeups']} wake-ups, {e['syscalls']} syscalls in {w:.1f} s", ok,
                             "" if ok else f"{e['wakeups']} wake-ups, {e['syscalls']} syscalls"))
    sig = get(r, "signals", "inits")
    if sig:
        for key, label in (("over_floor_p50_us", "p50 above the floor"),
                           ("over_floor_p99_us", "p99 above the floor")):
            a = sig["usher"][key]
            best = min((n for n in NAMES if n != "usher"), key=lambda n: sig[n][key])
            b = sig[best][key]
            rng = lambda n: get(sig, n, key.replace("_us", "_over_passes"))
            spread = ""
            if rng("usher") and rng(best):
                ua, ba = rng("usher"), rng(best)
                spread = (f" (ranges over {len(ua['passes'])} passes "
                          f"{us(ua['min'])}–{us(ua['max'])} vs {us(ba['min'])}–{us(ba['max'])})")
            rows.append((f"Signal latency {label} ≤ best peer's ({best}), median of passes",
                         f"{us(a)} µs vs {us(b)} µs{spread}", a <= b,
                         "" if a <= b else f"{us(a - b)} µs slower"))
    flood = get(r, "reaping", "modes", "flood", "inits")
    if flood and get(flood, "usher", "rate_per_s") and get(flood, REF, "rate_per_s"):
        ua, ta = flood["usher"]["rate_per_s"], flood[REF]["rate_per_s"]
        a, b = ua["p50"], ta["p50"]
        overlap = ua["min"] <= ta["max"] and ta["min"] <= ua["max"]
        rows.append(("Reaping rate ≥ tini's (zombies handed over at once, median)",
                     f"{a:,.0f}/s vs {b:,.0f}/s (ranges {ua['min']:,.0f}–{ua['max']:,.0f} vs "
                     f"{ta['min']:,.0f}–{ta['max']:,.0f})", a >= b,
                     ("" if a >= b else f"{b - a:,.0f}/s slower ({a / b:.2f}×)")
                     + ("; the ranges overlap: within noise" if overlap and a < b else "")))
    sd = get(r, "shutdown", "modes")
    if sd:
        crowd = get(r, "shutdown", "crowd") or 0
        for mode, label in (("host", "not PID 1"), ("pid1", "PID 1"),
                            ("host_crowd", f"not PID 1, +{crowd:,} processes"),
                            ("pid1_crowd", f"PID 1, +{crowd:,} processes on the host")):
            if mode not in sd:
                continue
            for kind in ("drain", "deadline"):
                s = sd[mode][f"{kind}_error_ms"]
                worst = max(abs(s["p99"]), abs(s["min"]))
                ok = abs(s["p99"]) < TIMER_P99_MS
                gap = "" if ok else f"{ms(abs(s['p99']) - TIMER_P99_MS)} ms over"
                raw = sd[mode].get("raw") or []
                calm = sorted(x[0 if kind == "drain" else 1] for x in raw
                              if x[3] <= CALM_TASKS and x[2] <= CALM_RUNNABLE)
                if not ok and calm:
                    gap += f"; calm runs only ({len(calm)}/{len(raw)}): p99 {ms(pct(calm, 99))} ms"
                rows.append((f"{kind.capitalize()} error p99 < {TIMER_P99_MS:g} ms ({label})",
                             f"p99 {ms(s['p99'])} ms (max {ms(s['max'])} ms)", ok, gap))
                del worst
    return table(["Target", "usher", "Verdict", "Gap"],
                 [(a, b, verdict(c), d) for a, b, c, d in rows], ["l", "l", "c", "l"])


def headline(r):
    rows = []
    idle = get(r, "idle", "inits") or {}
    sig = get(r, "signals", "inits") or {}
    flood = get(r, "reaping", "modes", "flood", "inits") or {}
    storm = get(r, "reaping", "modes", "storm", "inits") or {}
    size = r.get("size", {})
    ref = lambda f: f(REF)
    for n in NAMES:
        sz = get(size, n, "stripped_bytes")
        s_host = get(r, "startup", "inits", n, "overhead_p50_us")
        s_ns = get(r, "startup_pid1", "inits", n, "overhead_p50_us")
        rss = get(idle, n, "memory", "rss_kib")
        sp50 = get(sig, n, "over_floor_p50_us")
        sp99 = get(sig, n, "latency_us", "p99")
        rate = get(flood, n, "rate_per_s", "p50")
        peak = get(storm, n, "peak_unreaped", "p50")
        rows.append((
            f"**{n}**" if n == "usher" else n,
            f"{n0(sz)} ({ratio(sz, ref(lambda x: get(size, x, 'stripped_bytes')))})",
            "yes" if get(size, n, "static") else "no",
            f"{us(s_host)} ({ratio(s_host, ref(lambda x: get(r, 'startup', 'inits', x, 'overhead_p50_us')))})",
            f"{us(s_ns)} ({ratio(s_ns, ref(lambda x: get(r, 'startup_pid1', 'inits', x, 'overhead_p50_us')))})",
            f"{n0(rss)} ({ratio(rss, ref(lambda x: get(idle, x, 'memory', 'rss_kib')))})",
            f"{get(idle, n, 'wakeups')} / {get(idle, n, 'syscalls')}",
            f"{us(sp50)} ({ratio(sp50, ref(lambda x: get(sig, x, 'over_floor_p50_us')))})",
            f"{us(sp99)} ({ratio(sp99, ref(lambda x: get(sig, x, 'latency_us', 'p99')))})",
            f"{n0(rate)} ({ratio(rate, ref(lambda x: get(flood, x, 'rate_per_s', 'p50')))})",
            f"{n0(peak)}",
        ))
    w = get(r, "idle", "window_s") or 0
    return table(["init", "size, B", "static", "start-up µs, not PID 1", "start-up µs, PID 1",
                  "VmRSS KiB", f"wake-ups / syscalls in {w:.0f} s", "signal µs p50 above floor",
                  "signal µs p99", "reaped/s", "peak unreaped"],
                 rows, ["l", "r", "c", "r", "r", "r", "r", "r", "r", "r", "r"])


def doc(r, chart_rel, wall_s, sizes=()):
    env, c = r["env"], r["counts"]
    L = []
    add = L.append
    add("# Benchmarks: usher against tini, dumb-init and catatonit")
    add("")
    add(f"Generated by `{r['command']}` on {env['date_utc']} — do not edit by hand, run the "
        "command again. Every init is measured in the same run, interleaved (a shuffled order in "
        "each round) or side by side at the same moment, so a change in the machine's load "
        "touches all of them alike. The scripts are in [bench/](../bench/); the raw numbers of "
        f"this run are in `bench/out/results-{r['mode']}.json` on the machine that ran it.")
    add("")
    add(f"![usher against its peers: size, start-up, memory, wake-ups, signal latency, reaping, "
        f"shutdown timers]({chart_rel})")
    add("")
    add("## The machine and its load")
    add("")
    fmt_top = lambda k: ", ".join(f"{p['comm']} {p['cpu_pct']:.0f}%" for p in env.get(k, [])[:5]) or "none"
    add(f"- **CPU**: {env['cpu_model']}, `nproc` = {env['nproc']}; {env['mem_gib']} GiB of memory")
    add(f"- **Kernel**: Linux {env['kernel']}; pid_max {env['pid_max']:,}")
    add(f"- **Date**: {env['date_utc']}; the measurements took {r['duration_s'] / 60:.1f} min"
        + (f", the whole command (install, build, measure, report) {wall_s / 60:.1f} min" if wall_s else ""))
    la = env.get("loadavg_at_command_start") or env["loadavg_start"]
    add(f"- **Load at start**: load average {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min); "
        f"{env['cpu_busy_pct_before']}% of all CPU time busy in the 3 s before the first "
        f"measurement, {env.get('cpu_busy_pct_after', '?')}% in the 3 s after the last; "
        f"{env['processes_start']} processes on the machine")
    lb = env.get("loadavg_1m_before_reaping")
    if lb:
        add(f"- **Load during the run**: 1-minute load average {lb['min']:.2f}–{lb['max']:.2f} "
            "until the reaping tests; these drive it into the thousands themselves (every orphan "
            "exiting at once is runnable at once), so later figures say nothing about other load")
    add(f"- **Busiest processes** (% of one CPU over those 3 s): before, {fmt_top('top_before')}; "
        f"after, {fmt_top('top_after')}")
    busy = max(env.get("cpu_busy_pct_before", 0), env.get("cpu_busy_pct_after", 0) or 0)
    if busy > 15:
        add(f"- **Other load**: the machine was busy with other work while this ran (up to {busy}% "
            "of all CPU time outside the benchmark's own windows; see the busiest processes), so "
            "the figures are noisier than on a quiet machine; the comparison between inits stays "
            "fair because they were interleaved or run side by side")
    else:
        add("- **Other load**: little; the machine was mostly idle around the run")
    v = r["versions"]
    add(f"- **Inits**: {v.get('usher', 'usher ?')} ({env.get('usher_rev', '?')}; "
        f"{env.get('usher_build', '?')}, release profile); Debian packages tini {v['tini']} "
        f"(`tini` and `tini-static`), dumb-init {v['dumb-init']}, catatonit {v['catatonit']}")
    add(f"- **Mode**: {r['mode']}; counts {json.dumps(c)}")
    add("")
    add("## Summary")
    add("")
    add(f"Ratios in parentheses are to `{REF}` (Debian's default, dynamically linked); lower is "
        "better except reaped/s. Start-up is the p50 of `INIT true` minus the p50 of `true`. "
        "Signal p99 is the whole latency; the p50 column is above the floor of a signal sent "
        "straight to the app. Reaped/s and peak unreaped are medians over rounds.")
    add("")
    add(headline(r))
    add("")
    add("## Targets")
    add("")
    add(targets(r))
    add("")
    add(details(r, sizes))
    return "\n".join(L) + "\n"


def platform_sizes(doc_path):
    """The table of docs/sizes.md (scripts/dist.sh --docs), or [] without one."""
    path = os.path.join(os.path.dirname(os.path.abspath(doc_path)), "sizes.md")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    table = [l for l in lines if l.startswith("|")]
    after = lines[lines.index(table[-1]) + 1:] if table else []
    source = next((l for l in after if l.strip()), "")
    return table + ([""] + [source] if source else [])


def details(r, sizes=()):
    L = []
    add = L.append
    size = r.get("size")
    if size:
        add("## 1. Size")
        add("")
        add("Each binary copied and `strip --strip-all`ped (all were already stripped); "
            "static means `file` says statically linked (or static-pie) and `ldd` agrees.")
        add("")
        ref = size[REF]["stripped_bytes"]
        add(table(["init", "stripped bytes", "× tini", "static", "file"],
                  [(n, f"{size[n]['stripped_bytes']:,}", ratio(size[n]["stripped_bytes"], ref),
                    "yes" if size[n]["static"] else "no", size[n]["file"]) for n in NAMES],
                  ["l", "r", "r", "c", "l"]))
        add("")
        add("tini and dumb-init are small because they are dynamically linked: they need the C "
            "library of the image they run in. Of the static ones, usher is the smallest.")
        add("")
    if sizes:
        add("### usher's release binaries, per platform")
        add("")
        add("Copied from [sizes.md](sizes.md), which `scripts/dist.sh --docs` writes; how each "
            "is built and tested: [architectures.md](architectures.md).")
        add("")
        L.extend(sizes)
        add("")
    for key, title in (("startup", "2. Start-up overhead, not PID 1"),
                       ("startup_pid1", "2b. Start-up overhead as PID 1 of a new PID namespace")):
        s = r.get(key)
        if not s:
            continue
        add(f"## {title}")
        add("")
        base = s["baseline"]
        if key == "startup":
            add(f"`INIT true` against `true` alone, {base['n']:,} rounds after "
                f"{r['counts']['warmup']} warm-up rounds; each round runs all six commands once in a "
                "shuffled order, timing fork + exec + wait with CLOCK_MONOTONIC (bench/c/startup.c). "
                "Each init runs as a child subreaper where it has the option (`usher -s`, `tini -s`; "
                "catatonit makes itself one when it is not PID 1; dumb-init has no such option). "
                f"Baseline `true`: p50 {us(base['p50'])} µs, p90 {us(base['p90'])} µs.")
        else:
            add(f"The same with every command (and the baseline) run as "
                f"`unshare --pid --fork --mount-proc CMD`, so the init is PID 1 as in a container; "
                f"{base['n']:,} rounds. Baseline `unshare … true`: p50 {us(base['p50'])} µs, "
                f"p90 {us(base['p90'])} µs.")
        add("")
        ref50 = s["inits"][REF]["overhead_p50_us"]
        rows = []
        for n in NAMES:
            e = s["inits"][n]
            t = e["total_us"]
            rows.append((n, us(e["overhead_p50_us"]), ratio(e["overhead_p50_us"], ref50),
                         us(e["overhead_p90_us"]), us(t["p50"]), f"{us(t['min'])}–{us(t['max'])}",
                         e["failures"], f"`{e['cmd'].replace(r['paths']['usher'], 'usher')}`"))
        add(table(["init", "overhead p50 µs", "× tini", "overhead p90 µs", "total p50 µs",
                   "total min–max µs", "failed", "command"], rows,
                  ["l", "r", "r", "r", "r", "r", "r", "l"]))
        add("")
    sc = r.get("startup_scaling")
    if sc:
        add("## 2c. Start-up overhead against the number of processes on the machine")
        add("")
        add(f"The not-PID-1 start-up test again ({sc['rounds']} rounds each, p50 overhead in µs) "
            "with extra idle processes added to the machine (bench/c/idlers.c), and usher and "
            "tini-static as PID 1 of a new PID namespace beside them. An init whose cost does not "
            "depend on what else runs on the machine stays flat.")
        add("")
        cols = [k for k in next(iter(sc["extras"].values())) if k != "processes"]
        rows = []
        for extra, row in sc["extras"].items():
            rows.append([f"+{int(extra):,}", f"{row['processes']:,}"] + [us(row[c]) for c in cols])
        add(table(["extra processes", "processes in /proc"] + cols, rows))
        add("")
    idle = r.get("idle")
    if idle:
        add("## 3. Idle memory and 4. idle wake-ups")
        add("")
        add(f"All inits started side by side, each with `sleep 3600` as its app, plus a second "
            f"usher (its own copy of the binary, so the two share no page) that received SIGTERM "
            f"with `--drain 1h` and so is in the middle of a drain. After 2 s: VmRSS from "
            f"/proc/PID/status, Pss from /proc/PID/smaps_rollup. Then, over the same "
            f"{idle['window_s']:.1f} s window for all: voluntary + involuntary context switches "
            f"(/proc/PID/status) and system calls counted by `{idle['tracer']}`, which does not "
            f"wake the traced process.")
        add("")
        ref = idle["inits"][REF]["memory"]["rss_kib"]
        rows = []
        for n, e in idle["inits"].items():
            m = e["memory"]
            calls = ", ".join(f"{k} {v}" for k, v in sorted(e["syscalls_by_name"].items())) or "—"
            rows.append((n, f"{m['rss_kib']:,}", ratio(m["rss_kib"], ref), n0(m["pss_kib"]),
                         f"{m['rss_anon_kib']:,}", f"{m['rss_file_kib']:,}",
                         f"{e['ctxt_voluntary']} + {e['ctxt_nonvoluntary']}", e["syscalls"], calls))
        add(table(["init", "VmRSS KiB", "× tini", "Pss KiB", "anon KiB", "file KiB",
                   "ctx switches (vol + invol)", "syscalls", "which"], rows,
                  ["l", "r", "r", "r", "r", "r", "r", "r", "l"]))
        add("")
        add("Pss divides shared pages among the processes that map them: the dynamic tini and "
            "dumb-init share the C library with every other process on the machine, so their Pss "
            "is below their RSS; a static binary's pages are its own. tini wakes once a second "
            "(`rt_sigtimedwait` with a 1 s timeout, then `wait4`).")
        add("")
    sig = r.get("signals")
    if sig:
        f = sig["floor_us"]
        add("## 5. Signal forwarding latency")
        add("")
        passes = sig.get("passes", 1)
        per = sig.get("rounds_per_pass", f["n"])
        add(f"One harness (bench/c/siglat.c) starts every init with bench's `sigchild` as its app, "
            f"and one `sigchild` on its own (the floor), all pinned with `taskset` to CPU "
            f"{sig['cpu']}. It runs {passes} independent passes (fresh processes each); in each of "
            f"a pass's {per:,} rounds, in a shuffled order, it sends "
            f"{sig['signal']} to each init (or straight to the lone app for the floor) and reads "
            "back the CLOCK_MONOTONIC time at which the app's handler ran; latency = handler time "
            "minus the time just before `kill()`. Each init forwards as it does by default (usher "
            "and dumb-init to the app's process group, tini and catatonit to the app alone). Each "
            "figure is the median over the passes; the ranges are their min–max.")
        add("")
        ref50 = sig["inits"][REF]["over_floor_p50_us"]
        span = lambda e, k: (f"{us(e[k]['min'])}–{us(e[k]['max'])}" if k in e else "")
        rows = [("floor (no init)", us(f["p50"]), "", "", "", us(f["p99"]), "", "", us(f["max"]))]
        for n in NAMES:
            e = sig["inits"][n]
            l = e["latency_us"]
            rows.append((n, us(l["p50"]), us(e["over_floor_p50_us"]),
                         span(e, "over_floor_p50_over_passes"),
                         ratio(e["over_floor_p50_us"], ref50), us(l["p99"]),
                         us(e["over_floor_p99_us"]), span(e, "over_floor_p99_over_passes"),
                         us(l["max"])))
        add(table(["init", "p50 µs", "p50 above floor", "range over passes", "× tini", "p99 µs",
                   "p99 above floor", "range over passes", "max µs"], rows))
        add("")
    reap = get(r, "reaping", "modes")
    if reap:
        n = r["reaping"]["orphans"]
        add("## 6. Reaping")
        add("")
        methods = sorted({x for md in reap.values() for e in md["inits"].values()
                          for x in e.get("methods", [])})
        mon = [x.get("monitored", 0) for md in reap.values() for e in md["inits"].values()
               for x in e.get("runs", [])]
        add(f"Each init as PID 1 of `unshare --pid --fork --mount-proc --kill-child INIT APP`, the "
            f"app being bench's `orphans` (bench/c/orphans.c): a middle process forks {n:,} "
            "children. Rounds go through the inits in a shuffled order.")
        add("")
        if methods == ["pidfd"]:
            add(f"The app holds a pidfd for each child ({int(min(mon)):,} of the {n:,}: as many as its "
                "open-file limit allows) in one epoll set, at real-time priority: the kernel "
                "reports EPOLLIN when a child exits and EPOLLHUP once it is reaped, so the number "
                "waiting to be reaped is counted exactly, as it happens, and only in this "
                "namespace. Done is when all of them are reaped and /proc lists nothing but PID 1 "
                "and the app. It also reads PID 1's CPU time (utime + stime) over the interval.")
        else:
            add("This kernel does not report reaping on a pidfd (or the open-file limit was too "
                "low), so the app sampled the machine-wide task count in /proc/loadavg every "
                f"millisecond instead (methods used: {', '.join(methods)}): other processes "
                "starting or ending on the machine add noise to the peak.")
        add("")
        add(f"- **Flood** ({reap['flood']['rounds']} rounds): the {n:,} children exit while the "
            "middle process lives and does not reap them; once all are zombies the middle exits "
            f"and the kernel hands all {n:,} zombies to PID 1 at once (so the peak unreaped is "
            f"{n:,} by construction). Rate = {n:,} / (time from the middle's release until all "
            "are reaped): PID 1's reaping speed, with nothing else running in the namespace.")
        add(f"- **Storm** ({reap['storm']['rounds']} rounds): the middle exits first, so the "
            f"{n:,} are live orphans of PID 1, then all are released at once and exit together, "
            f"competing with PID 1 for the {r['env']['nproc']} CPUs. Peak unreaped = the most "
            "zombies waiting at once. Every `waitpid(-1, WNOHANG)` walks PID 1's whole list of "
            "children, live ones included, so an init that keeps up (reaping a few at a time "
            "while thousands still live) spends more CPU than one that falls behind and reaps "
            "them all at the end; which happens is up to the scheduler, so these swing more.")
        add("")
        for mode in ("flood", "storm"):
            m = reap[mode]
            ref = get(m, "inits", REF, "rate_per_s", "p50")
            rows, notes = [], []
            for x in NAMES:
                e = m["inits"][x]
                if "rate_per_s" not in e:
                    rows.append([x, "failed: " + "; ".join(e["errors"])[:200]])
                    continue
                rt, pk, dn, cpu = e["rate_per_s"], e["peak_unreaped"], e["done_ms"], e["init_cpu_ms"]
                row = [x, f"{rt['p50']:,.0f}", ratio(rt["p50"], ref),
                       f"{rt['min']:,.0f}–{rt['max']:,.0f}",
                       f"{dn['p50']:,.0f} ({dn['min']:,.0f}–{dn['max']:,.0f})",
                       f"{pk['p50']:,.0f} ({pk['min']:,.0f}–{pk['max']:,.0f})",
                       f"{cpu['p50']:,.0f} ({cpu['min']:,.0f}–{cpu['max']:,.0f})"]
                if mode == "flood":
                    del row[5]
                rows.append(row)
                if e["errors"] or e.get("failed_forks"):
                    notes.append(f"{mode}, {x}: {e.get('failed_forks', 0):.0f} failed forks; "
                                 + "; ".join(e["errors"]))
            add(f"**{mode.capitalize()}**, medians (min–max) over rounds:")
            add("")
            hdr = ["init", "reaped/s", "× tini", "reaped/s min–max", "all gone after ms",
                   "peak unreaped", "PID 1 CPU ms"]
            if mode == "flood":
                del hdr[5]
            add(table(hdr, [r_ for r_ in rows if len(r_) == len(hdr)] +
                      [r_ + [""] * (len(hdr) - len(r_)) for r_ in rows if len(r_) < len(hdr)]))
            add("")
            if notes:
                add("Problems: " + " | ".join(notes))
                add("")
    sd = r.get("shutdown")
    if sd:
        add("## 7. usher's shutdown timers")
        add("")
        add(f"`usher --drain {sd['drain_ms']}ms --grace-period {sd['grace_ms']}ms` with bench's "
            "`stopchild` as its app, which records when its SIGTERM handler runs and otherwise "
            "ignores the signal, so the grace period has to SIGKILL it (exit 137). Per run: start, "
            "wait for the app, idle 20 ms, SIGTERM usher; drain error = (app's TERM time − send "
            f"time) − {sd['drain_ms']} ms; deadline error = (usher reaped − send time) − "
            f"{sd['grace_ms']} ms, so it includes killing, reaping and usher's exit. Run both as a "
            "subreaper on this machine and as PID 1 of a new PID namespace (alternating blocks of 5 "
            f"runs), then all again with {sd.get('crowd', 0):,} unrelated idle processes added to "
            "the machine (bench/c/idlers.c), where an init that listed the whole host at its "
            "deadline would fall behind.")
        add("")
        rows = []
        crowd = sd.get("crowd", 0)
        labels = (("host", "not PID 1 (`-s`)"), ("pid1", "PID 1 (unshare)"),
                  ("host_crowd", f"not PID 1, +{crowd:,} processes"),
                  ("pid1_crowd", f"PID 1, +{crowd:,} processes on the host"))
        for mode, label in labels:
            if mode not in sd["modes"]:
                continue
            e = sd["modes"][mode]
            for kind in ("drain", "deadline"):
                s = e[f"{kind}_error_ms"]
                tk, rn = e.get("tasks_at_send"), e.get("runnable_at_send")
                rows.append((f"{kind}, {label}", s["n"], ms(s["p50"]), ms(s["p99"]),
                             f"{ms(s['min'])}–{ms(s['max'])}", ", ".join(map(str, e["exit_codes"])),
                             f"{tk['min']:,.0f}–{tk['max']:,.0f}" if tk else "n/a",
                             f"{rn['p50']:.0f} / {rn['max']:.0f}" if rn else "n/a"))
        # The same runs, only those sent while the machine was calm.
        calm_rows = []
        for mode, label in labels[:2]:
            raw = sd["modes"][mode].get("raw") or []
            calm = [x for x in raw if x[3] <= CALM_TASKS and x[2] <= CALM_RUNNABLE]
            if not calm or len(calm) == len(raw):
                continue
            for k, kind in ((0, "drain"), (1, "deadline")):
                v = sorted(x[k] for x in calm)
                calm_rows.append((f"{kind}, {label}, calm runs only", len(v), ms(pct(v, 50)),
                                  ms(pct(v, 99)), f"{ms(v[0])}–{ms(v[-1])}", "",
                                  f"≤ {CALM_TASKS:,}", f"≤ {CALM_RUNNABLE}"))
        add(table(["timer", "runs", "error p50 ms", "error p99 ms", "min–max ms", "exit codes",
                   "tasks on the machine", "runnable p50 / max"], rows + calm_rows))
        add("")
        add("The last two columns are read from /proc/loadavg just before each SIGTERM: the load "
            "the timers had to cut through; the \"calm runs only\" rows keep the runs sent with at "
            f"most {CALM_TASKS:,} tasks on the machine and at most {CALM_RUNNABLE} runnable (they "
            "are a subset, shown to separate usher's own error from the machine's; the targets "
            "are judged on all runs). The drain timer has nothing to do when it fires but forward "
            "a signal, so its tail is scheduling delay; the deadline's also holds the SIGKILL "
            "itself, the app's death, usher's reaping and exit (and, as PID 1, the namespace's "
            "teardown and unshare's exit).")
        add("")
    add("## Notes and caveats")
    add("")
    add("- Figures from a shared 2-CPU machine under other engineers' load: read differences of a "
        "few percent, and any single max, as noise. Medians are over many interleaved runs; "
        "where rounds are few (reaping) the min–max is given.")
    sc = get(r, "startup_scaling", "extras")
    if sc and len(sc) > 1:
        pts = list(sc.values())
        slopes = {}
        for col in [k for k in pts[0] if k != "processes"]:
            xs = [p_["processes"] for p_ in pts]
            ys = [p_[col] for p_ in pts]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            var = sum((x - mx) ** 2 for x in xs)
            if var > 0:
                slopes[col] = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var * 1000
        if slopes:
            add("- Start-up cost per 1,000 more processes on the machine (least-squares slope "
                "over table 2c; the process counts include whatever else was running): "
                + ", ".join(f"{k} {v:+,.0f} µs" for k, v in slopes.items()) + ".")
    add("- What usher's start-up is made of (read with strace, not re-checked by the command): "
        "std's runtime set-up before `main` (a poll of fds 0-2, SIGPIPE ignored, a sigaltstack "
        "with its guard page and SEGV/BUS handlers: 11 system calls, 3 more at exit) — only a "
        "no_main/no_std build would drop it; blocking signals and resetting SIGCHLD (2); the "
        "signalfd and timerfd (2); the terminal check (1); one read of /proc/self/status to reset "
        "only the ignored signals in the app (4); the close-on-exec exec-status pipe that lets "
        "usher report 126/127 with the real reason (pipe, read, 2 closes); fork. Nothing reads "
        "/proc at the app's exit when it left no child behind, and the stderr twin is opened only "
        "when a line is written.")
    add("- Signal latency: per forwarded signal usher makes two system calls, a `read` of the "
        "signalfd and a `kill`, as catatonit does; between them the state machine, its action "
        "queue and a level check that skips building the debug line.")
    add("- At the grace-period deadline usher sends SIGKILL first — `kill(-1)` as PID 1, the "
        "app's process group otherwise — and only then reads /proc to name the pids in the log; "
        "not PID 1 it walks down its own tree (`/proc/PID/task/TID/children`), never the whole "
        "host, so the processes of other containers and services do not delay its exit.")
    add("- Size: std is most of the binary. A Rust `println!` hello world with the same profile "
        "is 371,576 B on x86_64 musl linked with rust-lld (377,400 B with ld.bfd); a no_std one "
        "with `alloc` and `core::fmt` is 22,488 B (rust-lld). usher's own code is about 70 KiB "
        "of .text (cargo bloat). "
        "A std-free usher is estimated at 110–130 KiB: that 22 KiB floor, usher's 70 KiB, and "
        "20–40 KiB for what std gives it today (directory reading, environment, OsString, "
        "io::Error messages) rewritten over libc.")
    add("- Start-up overhead is a difference of two percentiles over separate runs, so a p90 can "
        "come out below the p50 when the baseline itself is noisy.")
    add("- dumb-init, when not PID 1, is not a subreaper (it has no option for it); it still "
        "reaps its own children. tini needs `-s` there, or it warns on every start.")
    add("- Reaping uses 20,000 pids at once (pid_max here is 32,768): other heavy forkers on the "
        "machine during that minute could meet EAGAIN, and failed forks are counted (`failed`).")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results")
    ap.add_argument("--doc", required=True)
    ap.add_argument("--chart", required=True)
    ap.add_argument("--wall-start", type=float, default=0)
    a = ap.parse_args()
    with open(a.results) as f:
        r = json.load(f)
    wall = r.get("command_s") or (time.time() - a.wall_start if a.wall_start else 0)
    os.makedirs(os.path.dirname(os.path.abspath(a.chart)), exist_ok=True)
    with open(a.chart, "w") as f:
        f.write(chart(r))
    rel = os.path.relpath(os.path.abspath(a.chart), os.path.dirname(os.path.abspath(a.doc)))
    with open(a.doc, "w") as f:
        f.write(doc(r, rel, wall, platform_sizes(a.doc)))


if __name__ == "__main__":
    main()
