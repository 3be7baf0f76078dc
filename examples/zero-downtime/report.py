#!/usr/bin/env python3
"""Turns harness.py's JSON into markdown tables and an SVG chart.

    report.py RESULTS.json --table TABLE.md --chart CHART.svg
              [--doc docs/zero-downtime.md --chart-link img/zero-downtime.svg]
              [--source examples/zero-downtime/results/results.json]

Two kinds of results: the drain comparison (scenarios nodrain, fixed,
fixed-long, adaptive over the balancer paths; run.sh) and the comparison of
inits (run.sh --inits). With --doc, the text replaces what lies between the
markers `<!-- results:begin -->` and `<!-- results:end -->` (the drain
comparison) or `<!-- inits:begin -->` and `<!-- inits:end -->` (the inits)
in that file; the prose around them is left alone. Every number comes from
RESULTS.json.
"""

import argparse
import json
import re
import statistics
from html import escape

# The drain comparison goes between the results markers, the comparison of
# inits (run.sh --inits) between its own.
MARKERS = {"drain": ("<!-- results:begin -->", "<!-- results:end -->"),
           "inits": ("<!-- inits:begin -->", "<!-- inits:end -->")}
KINDS = ("http_5xx", "conn_error", "cut", "other")


def seconds(d):
    """'500ms', '2s', '1m30s' -> seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h)", d))


def med(v):
    m = statistics.median(v)
    return int(m) if float(m).is_integer() else round(m, 1)


def spread(v, fmt=str):
    """'median (min–max)', or just the value when all show the same."""
    m, lo, hi = fmt(med(v)), fmt(min(v)), fmt(max(v))
    return m if lo == hi else f"{m} ({lo}–{hi})"


def effective_drain(meta, scenario):
    """How long the old replica keeps accepting after docker stop's signal."""
    return {"shell": meta["stop_timeout"],  # sh drops SIGTERM: SIGKILL at -t
            "usher-short": seconds(meta["short"]),
            "usher-drain": seconds(meta["drain"])}.get(scenario, 0.0)


def expected(meta, scenario, steps):
    """Requests sent to a replica that no longer accepts: per step, the share
    of the rotation it still has (1 of 3 servers) × rate × (lag − drain)."""
    return steps * meta["rate"] / 3 * max(0.0, meta["lag"] - effective_drain(meta, scenario))


def groups(runs, mode):
    out = {}
    for r in runs:
        if r["mode"] == mode:
            out.setdefault(r["scenario"], []).append(r)
    return out


def inits_table(d):
    meta, g = d["meta"], groups(d["runs"], "strict")
    rows = ["| scenario | failed requests, median (range) | 5xx · no response · cut (medians) "
            "| expected refused: steps × rate/3 × (lag − drain) | stop signal seen, ms after `docker stop` "
            "| `docker stop` s, median (range) | exit codes | requests per run |",
            "|---|---|---|---|---|---|---|---|"]
    for s, rs in g.items():
        kinds = " · ".join(str(med([r["counts"][k] for r in rs]))
                           for k in ("http_5xx", "conn_error", "cut"))
        stops = [st["stop_s"] for r in rs for st in r["steps"]]
        codes = sorted({st["exit_code"] for r in rs for st in r["steps"]})
        exp = expected(meta, s, len(rs[0]["steps"]))
        seen = [st.get("signal_s") for r in rs for st in r["steps"]]
        seen = ("never (sh as PID 1 drops it)" if not any(x is not None for x in seen)
                else spread([1000 * x for x in seen if x is not None], lambda x: f"{x:.0f}"))
        rows.append(f"| {meta['labels'][s]} | **{spread([r['failed'] for r in rs])}** | {kinds} "
                    f"| {exp:.0f} | {seen} | {spread(stops, lambda x: f'{x:.1f}')} "
                    f"| {', '.join(map(str, codes))} | {med([r['sent'] for r in rs])} |")
    return "\n".join(rows)


def inits_retries_table(d):
    meta = d["meta"]
    rows = ["| scenario | haproxy | failed, median (range) | 5xx · no response · cut (medians) "
            "| a failure took, median s | small page p99 / max ms (medians) |",
            "|---|---|---|---|---|---|"]
    for mode in ("strict", "retries", "redispatch"):
        for s, rs in groups(d["runs"], mode).items():
            if s not in meta["extra_scenarios"]:
                continue
            kinds = " · ".join(str(med([r["counts"][k] for r in rs]))
                               for k in ("http_5xx", "conn_error", "cut"))
            lat = (f"{1000 * statistics.median([r['small_ok_p99_s'] for r in rs]):.0f} / "
                   f"{1000 * statistics.median([r['small_ok_max_s'] for r in rs]):.0f}")
            took = [f["end_rel"] - f["t_rel"] for r in rs for f in r["failures"]]
            took = f"{statistics.median(took):.2f}" if took else "–"
            rows.append(f"| {meta['labels'][s]} | `{meta['modes'][mode].replace(chr(10), '` + `').replace('    ', '')}` "
                        f"| {spread([r['failed'] for r in rs])} | {kinds} | {took} | {lat} |")
    return "\n".join(rows)


def inits_headline(d):
    g = groups(d["runs"], "strict")
    m = d["meta"]
    parts = [f"{m['labels'][s]}: {spread([r['failed'] for r in g[s]])}" for s in g]
    return (f"Failed requests per rolling restart of 2 replicas, {m['rate']:.0f} req/s, "
            f"{m['lag']:g} s balancer lag, haproxy `retries 0`, median (range) of "
            f"{m['reps']} runs: " + "; ".join(parts) + ".")


def inits_section(d, chart_link, source):
    m = d["meta"]
    begin, end = MARKERS["inits"]
    return "\n".join([
        begin,
        f"<!-- generated by examples/zero-downtime/report.py from {source}: do not edit by hand -->",
        "",
        inits_headline(d),
        "",
        inits_table(d),
        "",
        f"![failed requests per scenario, and when they failed]({chart_link})",
        "",
        "The same restarts with haproxy's retries (how long a failed request took to fail, "
        "and the slowest small-page answers, show what a retry costs):",
        "",
        inits_retries_table(d),
        "",
        f"Run: `{m['command'] or 'harness.py'}`, {m['started']}, {m['wall_s']:.0f} s, "
        f"{m['cpus']} CPUs (load average {' '.join(m['loadavg_start'])} at the start, "
        f"{' '.join(m['loadavg_end'])} at the end); "
        f"{m['nginx']}; {m['haproxy'].split(' - ')[0]}; Docker engine {m['docker']}; "
        f"{m['usher']}. Slow requests: {m['slow_share']:.0%} of the load "
        f"(100 KiB at 100 KiB/s); the rest a 1 KiB page. "
        f"`docker stop -t {m['stop_timeout']}`.",
        end,
    ])


# ---------------------------------------------------------------------------
# the chart: bars (failed per scenario) and a timeline of every failure

COLORS = {"shell": "#868e96", "tini-term": "#e8590c", "tini-quit": "#f59f00",
          "usher-nodrain": "#4dabf7", "usher-short": "#1c7ed6", "usher-drain": "#2b8a3e"}
KIND_MARK = {"http_5xx": "#c92a2a", "conn_error": "#862e9c", "cut": "#212529", "other": "#868e96"}


def inits_chart(d):
    m, g = d["meta"], groups(d["runs"], "strict")
    w, label_w = 860, 330
    row = 26
    parts = []
    y = 24
    parts.append(f'<text x="10" y="{y}" class="t">Failed requests per rolling restart '
                 f'of 2 replicas ({m["rate"]:.0f} req/s, {m["lag"]:g} s balancer lag, '
                 f'haproxy retries 0)</text>')
    parts.append(f'<text x="10" y="{y + 14}" class="n">bar: median of {m["reps"]} runs; '
                 f'whiskers: min–max; then the docker stop time (median) and the exit codes</text>')
    y += 26
    vmax = max([r["failed"] for rs in g.values() for r in rs] + [1])
    plot_w = w - label_w - 240
    for s, rs in g.items():
        v = [r["failed"] for r in rs]
        cy = y + 8
        stops = [st["stop_s"] for r in rs for st in r["steps"]]
        codes = sorted({st["exit_code"] for r in rs for st in r["steps"]})
        parts.append(f'<text x="{label_w - 8}" y="{cy + 13}" class="l" text-anchor="end">'
                     f'{escape(m["labels"][s])}</text>')
        bw = plot_w * statistics.median(v) / vmax
        parts.append(f'<rect x="{label_w}" y="{cy}" width="{bw:.1f}" height="18" '
                     f'fill="{COLORS.get(s, "#495057")}"/>')
        x0, x1 = label_w + plot_w * min(v) / vmax, label_w + plot_w * max(v) / vmax
        parts.append(f'<line x1="{x0:.1f}" y1="{cy + 9}" x2="{x1:.1f}" y2="{cy + 9}" '
                     f'stroke="#212529"/>')
        for xx in (x0, x1):
            parts.append(f'<line x1="{xx:.1f}" y1="{cy + 4}" x2="{xx:.1f}" y2="{cy + 14}" '
                         f'stroke="#212529"/>')
        parts.append(f'<text x="{max(bw, x1 - label_w) + label_w + 6:.1f}" y="{cy + 13}" class="v">'
                     f'{escape(spread(v))}  ·  stop {med(stops):.1f} s, exit '
                     f'{"/".join(map(str, codes))}</text>')
        y += row
    y += 30
    # Timeline: every failure of every run, at its send time after docker stop.
    lo, hi = -1.5, max(3.0, m["lag"] + 2)
    tw = w - label_w - 30
    tx = lambda t: label_w + tw * (min(max(t, lo), hi) - lo) / (hi - lo)  # noqa: E731
    parts.append(f'<text x="10" y="{y}" class="t">When each failed request was sent, '
                 f'relative to the nearest docker stop</text>')
    parts.append(f'<text x="10" y="{y + 14}" class="n">every failure of every run (both steps '
                 f'of each); before 0: in flight when the stop came</text>')
    y += 32
    top = y
    for s, rs in g.items():
        cy = y + 6
        parts.append(f'<text x="{label_w - 8}" y="{cy + 12}" class="l" text-anchor="end">'
                     f'{escape(m["labels"][s])}</text>')
        dr = effective_drain(m, s)
        if dr > 0:
            parts.append(f'<rect x="{tx(0):.1f}" y="{cy}" width="{tx(dr) - tx(0):.1f}" height="16" '
                         f'fill="#d3f9d8"/>')
        n = 0
        for r in rs:
            for f in r["failures"]:
                jitter = (n * 7919 % 13) / 13 * 14
                parts.append(f'<circle cx="{tx(f["t_rel"]):.1f}" cy="{cy + 1 + jitter:.1f}" r="1.6" '
                             f'fill="{KIND_MARK[f["kind"]]}"/>')
                n += 1
        y += row - 6
    for t, label, color in ((0, "docker stop", "#212529"),
                            (m["lag"], f"disabled in haproxy (+{m['lag']:g} s)", "#c92a2a")):
        parts.append(f'<line x1="{tx(t):.1f}" y1="{top}" x2="{tx(t):.1f}" y2="{y + 6}" '
                     f'stroke="{color}" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{tx(t) + 3:.1f}" y="{y + 18}" class="n" fill="{color}">'
                     f'{escape(label)}</text>')
    for t in range(int(lo), int(hi) + 1):
        parts.append(f'<text x="{tx(t):.1f}" y="{top}" class="n" text-anchor="middle">{t:+d} s</text>')
    y += 34
    lx = 10
    for k, label in (("http_5xx", "5xx (haproxy: connection refused)"), ("cut", "cut mid-body"),
                     ("conn_error", "no response"), ("drain", "old replica still accepting")):
        if k == "drain":
            parts.append(f'<rect x="{lx}" y="{y - 8}" width="10" height="10" fill="#d3f9d8"/>')
        else:
            parts.append(f'<circle cx="{lx + 4}" cy="{y - 3}" r="3" fill="{KIND_MARK[k]}"/>')
        parts.append(f'<text x="{lx + 12}" y="{y + 1}" class="n">{escape(label)}</text>')
        lx += 30 + 6 * len(label)
    h = y + 14
    style = ("<style>text{font-family:sans-serif;fill:#212529}.t{font-size:13px;font-weight:bold}"
             ".l{font-size:12px}.v{font-size:11px}.n{font-size:10px}</style>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}">{style}<rect width="{w}" height="{h}" fill="#fff"/>'
            + "".join(parts) + "</svg>\n")


# ---------------------------------------------------------------------------
# the drain comparison: scenarios x balancer paths, stops with their own lags

LAG_COLORS = ("#74c0fc", "#339af0", "#1864ab", "#e8590c", "#c92a2a", "#862e9c")


def mean(v):
    return sum(v) / len(v) if v else None


def s1(x):
    return "–" if x is None else f"{x:.1f}"


def cells(d):
    """{(scenario, path): runs} of haproxy `retries 0`, in the run's order."""
    out = {}
    for r in d["runs"]:
        if r["mode"] == "strict":
            out.setdefault((r["scenario"], r["path"]), []).append(r)
    return out


def order(d):
    m = d["meta"]
    ran = {(r["scenario"], r["path"]) for r in d["runs"]}
    scenarios = [s for s in m["scenarios"] if any(k[0] == s for k in ran)]
    paths = [p for p in m["paths"] if any(k[1] == p for k in ran)]
    return scenarios, paths


def all_lags(d):
    return sorted({st["lag"] for r in d["runs"] for st in r["steps"]})


def stat(rs):
    """What the runs of one scenario and path show."""
    steps = [st for r in rs for st in r["steps"]]
    by_lag = {}
    for st in steps:
        by_lag[st["lag"]] = by_lag.get(st["lag"], 0) + st["failed"]
    fw = [st["forwarded_s"] for st in steps if st.get("forwarded_s") is not None]
    last = [st["last_request_s"] for st in steps if st.get("last_request_s") is not None]
    return {"failed": sum(r["failed"] for r in rs), "by_lag": by_lag,
            "outside": sum(r.get("failed_outside_stops", 0) for r in rs),
            "stops": len(steps), "lag_mean": mean([st["lag"] for st in steps]),
            "lag_max": max(st["lag"] for st in steps),
            "stop_mean": mean([st["stop_s"] for st in steps]),
            "stop_max": max(st["stop_s"] for st in steps),
            "fw_mean": mean(fw), "fw_max": max(fw) if fw else None,
            "last_mean": mean(last), "last_max": max(last) if last else None,
            "codes": sorted({st["exit_code"] for st in steps}),
            "kinds": {k: sum(r["counts"][k] for r in rs) for k in KINDS},
            "reused": sum(r.get("reused_conn_failures", 0) for r in rs),
            "sent": sum(r["sent"] for r in rs)}


def lag_list(lags):
    return " / ".join(f"{x:g}" for x in lags)


def failed_cell(st, lags):
    return f"**{st['failed']}** ({' / '.join(str(st['by_lag'].get(x, 0)) for x in lags)})"


def drain_label(m, s):
    return m["labels"][s]


def common_options(m):
    return f"`-r TERM:QUIT --grace-period {m['grace']}`"


def setup_text(d):
    m = d["meta"]
    lags = all_lags(d)
    steps = [st["lag"] for r in d["runs"] for st in r["steps"]]
    first = [st["lag"] for st in d["runs"][0]["steps"]] if d["runs"] else []
    counts = sorted({first.count(x) for x in lags})
    reps = m["reps"]
    each = (f"{counts[0]} stop{'s' if counts[0] > 1 else ''} of each per run, in a shuffled order"
            if len(counts) == 1 else "in a shuffled order")
    return (f"Rolling restarts of 2 replicas, {m['stops']} stops per run, each stop with its own "
            f"balancer lag: {', '.join(f'{x:g}' for x in lags)} s ({each}; mean "
            f"{mean(steps):.2f} s, worst {max(steps):g} s); {m['rate']:.0f} requests/s through "
            f"haproxy (`retries 0`), {m['slow_share']:.0%} of them 1 s long; "
            + (f"a prober GETs each replica directly every {m['probe_every']:g} s; "
               if m.get("probe_every") else "no prober; ")
            + f"{reps} run{'s' if reps > 1 else ''} per scenario and path. Every scenario is usher "
            f"with {common_options(m)}, `docker stop -t {m['stop_timeout']}`.")


SHORT = {"http-close": "HTTP fresh", "http-pool": "HTTP pooled",
         "tcp-close": "L4", "tcp-keepalive": "L4 keep-alive"}


def per_path(sts, key, fmt):
    return " · ".join(f"{SHORT.get(p, p)} {fmt(st[key])}" for p, st in sts.items())


def claim_text(d):
    """What the figures say about the target: the adaptive drain loses 0 on
    every path, its mean stop time is within 1 s of the mean lag, and the
    fixed drain that loses 0 pays the worst lag on every stop."""
    m, c = d["meta"], cells(d)
    scenarios, paths = order(d)
    steps = [st["lag"] for r in d["runs"] for st in r["steps"]]
    lag_mean, lag_max = mean(steps), max(steps)
    out = [f"Mean lag over the stops {lag_mean:.2f} s, worst {lag_max:g} s. Stop time: from "
           f"`docker stop` to the container gone (it includes the responses still in flight "
           f"when nginx gets its stop signal, up to 1 s); `forwarded`: from `docker stop` to "
           f"usher's `forwarded` line (its stop signal reaching nginx). Means per path (HTTP fresh: a new "
           f"server connection per request; HTTP pooled: `http-reuse always`; L4: `mode tcp`, a new "
           f"connection per request; L4 keep-alive: the same with keep-alive clients):", ""]
    if "adaptive" in m.get("refused", {}):
        out.append(f"- **{drain_label(m, 'adaptive')}: not measured** — this usher refused it "
                   f"(`{m['refused']['adaptive']}`); its rows await the feature.")
    for s in sorted(scenarios, key=lambda s: s != "adaptive"):
        sts = {p: stat(c[(s, p)]) for p in paths if (s, p) in c}
        total = sum(st["failed"] for st in sts.values())
        lost = ("0 on every path" if total == 0 else
                f"{total} failed requests ({per_path(sts, 'failed', str)})")
        times = (f"stop time: {per_path(sts, 'stop_mean', lambda x: f'{x:.1f} s')}; "
                 f"`forwarded`: {per_path(sts, 'fw_mean', lambda x: f'{s1(x)} s')}")
        line = f"- **{drain_label(m, s)}**: {lost}; {times}."
        if s == "adaptive":
            def met(key):
                ok = [p for p, st in sts.items()
                      if st[key] is not None and st[key] - lag_mean <= 1.0]
                return (f"met on {len(ok)} of {len(sts)} paths"
                        + (f" ({', '.join(SHORT.get(p, p) for p in ok)})" if ok else ""))
            line += (f" Target: 0 lost on every path — {'met' if total == 0 else 'NOT met'}; "
                     f"mean stop time within 1 s of the mean lag — {met('stop_mean')} (the "
                     f"stop time includes the last responses, up to 1 s after the lag); mean "
                     f"`forwarded` within 1 s of the mean lag — {met('fw_mean')}.")
        elif total == 0:
            allst = [x for p in sts for r in c[(s, p)] for x in r["steps"]]
            line += (f" Every stop pays the drain: {mean([x['stop_s'] for x in allst]):.1f} s "
                     f"on average, for a mean lag of {lag_mean:.2f} s.")
        else:
            by_lag = {}
            for st in sts.values():
                for x, n in st["by_lag"].items():
                    by_lag[x] = by_lag.get(x, 0) + n
            line += " Lost in the stops with a lag of " + ", ".join(
                f"{x:g} s: {n}" for x, n in sorted(by_lag.items())) + "."
        out.append(line)
    return "\n".join(out)


def failed_table(d):
    m, c = d["meta"], cells(d)
    scenarios, paths = order(d)
    lags = all_lags(d)
    rows = ["| scenario (usher " + common_options(m) + " and) | "
            + " | ".join(SHORT.get(p, p) for p in paths) + " |",
            "|---" * (len(paths) + 1) + "|"]
    for s in scenarios:
        rows.append(f"| {drain_label(m, s)} | " + " | ".join(
            failed_cell(stat(c[(s, p)]), lags) if (s, p) in c else "–" for p in paths) + " |")
    for s, why in m.get("refused", {}).items():
        rows.append(f"| {drain_label(m, s)} | " + " | ".join(
            "awaits the feature" for _ in paths) + " |")
    return "\n".join(rows)


def stops_table(d):
    m, c = d["meta"], cells(d)
    scenarios, paths = order(d)
    rows = ["| path | scenario | mean lag s | stop → `forwarded` s, mean / worst "
            "| `docker stop` → gone s, mean / worst | last request reached the old replica, "
            "s after the stop, mean / worst | 5xx · no response · cut | exit codes |",
            "|---|---|---|---|---|---|---|---|"]
    for p in paths:
        for s in scenarios:
            if (s, p) not in c:
                continue
            st = stat(c[(s, p)])
            k = st["kinds"]
            rows.append(f"| {SHORT.get(p, p)} | {drain_label(m, s)} | {st['lag_mean']:.2f} "
                        f"| {s1(st['fw_mean'])} / {s1(st['fw_max'])} "
                        f"| {st['stop_mean']:.1f} / {st['stop_max']:.1f} "
                        f"| {s1(st['last_mean'])} / {s1(st['last_max'])} "
                        f"| {k['http_5xx']} · {k['conn_error']} · {k['cut']} "
                        f"| {', '.join(map(str, st['codes']))} |")
    return "\n".join(rows)


def connections_table(d):
    m = d["meta"]
    _, paths = order(d)
    rows = ["| path | requests served / server-side connections (nginx's log) "
            "| client connections / requests sent | failures on a reused client connection "
            "| prober: probes, failed before / after their replica's stop |",
            "|---|---|---|---|---|"]
    for p in paths:
        rs = [r for r in d["runs"] if r["path"] == p and r["mode"] == "strict"]
        req, conn = sum(r["server_requests"] for r in rs), sum(r["server_connections"] for r in rs)
        cli, sent = sum(r["client_connections"] for r in rs), sum(r["sent"] for r in rs)
        pr = [r["probes"] for r in rs]
        rows.append(f"| {SHORT.get(p, p)} | {req} / {conn} ({req / max(conn, 1):.1f} per connection) "
                    f"| {cli} / {sent} | {sum(r['reused_conn_failures'] for r in rs)} "
                    f"| {sum(x['sent'] for x in pr)}, {sum(x['failed_before_stop'] for x in pr)} / "
                    f"{sum(x['failed_after_stop'] for x in pr)} |")
    return "\n".join(rows)


def run_line(m):
    return (f"Run: `{m['command'] or 'harness.py'}`, {m['started']}, {m['wall_s']:.0f} s, "
            f"{m['cpus']} CPUs (load average {' '.join(m['loadavg_start'])} at the start, "
            f"{' '.join(m['loadavg_end'])} at the end); "
            f"{m['nginx']}; {m['haproxy'].split(' - ')[0]}; Docker engine {m['docker']}; "
            f"{m['usher']}.")


def drain_section(d, chart_link, source):
    m = d["meta"]
    begin, end = MARKERS["drain"]
    lags = all_lags(d)
    return "\n".join([
        begin,
        f"<!-- generated by examples/zero-downtime/report.py from {source}: do not edit by hand -->",
        "",
        setup_text(d),
        "",
        claim_text(d),
        "",
        f"Failed requests per scenario and path, all runs: **total** (by the lag of the stop "
        f"each is attributed to: {lag_list(lags)} s):",
        "",
        failed_table(d),
        "",
        f"![failed requests and stop times per scenario and path]({chart_link})",
        "",
        "Stop times, per path and scenario (every stop of every run):",
        "",
        stops_table(d),
        "",
        "Connections: whether a path pools them (requests per server-side connection, from "
        "nginx's access log: `$connection`), and the prober:",
        "",
        connections_table(d),
        "",
        run_line(m),
        end,
    ])


def drain_chart(d):
    m, c = d["meta"], cells(d)
    scenarios, paths = order(d)
    refused = m.get("refused", {})
    scenarios = [s for s in m["scenarios"] if s in scenarios or s in refused]
    lags = all_lags(d)
    color = {x: LAG_COLORS[min(i, len(LAG_COLORS) - 1)] for i, x in enumerate(lags)}
    steps = [st for r in d["runs"] if r["mode"] == "strict" for st in r["steps"]]
    lag_mean, lag_max = mean([st["lag"] for st in steps]), max(st["lag"] for st in steps)
    w, label_w, bar_w, gap = 980, 250, 240, 40
    x_bar, x_t = label_w, label_w + bar_w + gap
    t_w = w - x_t - 20
    t_max = max([st["stop_s"] for st in steps] + [st.get("forwarded_s") or 0 for st in steps]
                + [lag_max + 1])
    t_max = float(int(t_max) + 1)
    tx = lambda t: x_t + t_w * min(max(t, 0.0), t_max) / t_max  # noqa: E731
    vmax = max([stat(rs)["failed"] for rs in c.values()] + [1])
    parts, y, row = [], 22, 22
    parts.append(f'<text x="10" y="{y}" class="t">Rolling restarts: failed requests and stop '
                 f'time per scenario and balancer path</text>')
    parts.append(f'<text x="10" y="{y + 15}" class="n">{m["stops"]} stops per run, lags '
                 f'{", ".join(f"{x:g}" for x in lags)} s (mean {lag_mean:.2f} s), '
                 f'{m["rate"]:.0f} req/s, haproxy retries 0, {m["reps"]} run(s) per cell; every '
                 f'scenario: usher -r TERM:QUIT --grace-period {escape(m["grace"])}</text>')
    y += 40
    parts.append(f'<text x="{x_bar}" y="{y}" class="h">failed requests (by the lag of the stop)</text>')
    parts.append(f'<text x="{x_t}" y="{y}" class="h">each stop: docker stop → gone (dot), '
                 f'→ usher\'s forwarded (ring), s</text>')
    y += 8
    for p in paths:
        y += 18
        parts.append(f'<text x="10" y="{y}" class="p">{escape(m["path_labels"][p])}</text>')
        top = y + 4
        for t in range(0, int(t_max) + 1, 1 if t_max <= 8 else 2):
            parts.append(f'<line x1="{tx(t):.1f}" y1="{top}" x2="{tx(t):.1f}" '
                         f'y2="{top + row * len(scenarios) + 4}" stroke="#e9ecef"/>')
            parts.append(f'<text x="{tx(t):.1f}" y="{top + row * len(scenarios) + 14}" class="n" '
                         f'text-anchor="middle">{t}</text>')
        for t, dash, col in ((lag_mean, "4 3", "#495057"), (lag_max, "2 2", "#c92a2a")):
            parts.append(f'<line x1="{tx(t):.1f}" y1="{top}" x2="{tx(t):.1f}" '
                         f'y2="{top + row * len(scenarios) + 4}" stroke="{col}" stroke-dasharray="{dash}"/>')
        y = top
        for s in scenarios:
            cy = y + 4
            parts.append(f'<text x="{label_w - 8}" y="{cy + 12}" class="l" text-anchor="end">'
                         f'{escape(drain_label(m, s))}</text>')
            if (s, p) not in c:
                why = ("not measured: this usher refused it (awaits the feature)"
                       if s in refused else "not run")
                parts.append(f'<text x="{x_bar}" y="{cy + 11}" class="n">{why}</text>')
                y += row
                continue
            st = stat(c[(s, p)])
            x = x_bar
            for lag in lags:
                n = st["by_lag"].get(lag, 0)
                if n:
                    bw = bar_w * n / vmax
                    parts.append(f'<rect x="{x:.1f}" y="{cy}" width="{bw:.1f}" height="14" '
                                 f'fill="{color[lag]}"/>')
                    x += bw
            parts.append(f'<text x="{x + 4:.1f}" y="{cy + 11}" class="v">{st["failed"]}</text>')
            n = 0
            for r in c[(s, p)]:
                for stp in r["steps"]:
                    jitter = (n * 5 % 7) / 7 * 10 - 5
                    if stp.get("forwarded_s") is not None:
                        parts.append(f'<circle cx="{tx(stp["forwarded_s"]):.1f}" cy="{cy + 7 + jitter * 0.6:.1f}" '
                                     f'r="3.2" fill="none" stroke="{color[stp["lag"]]}" stroke-width="1.2"/>')
                    parts.append(f'<circle cx="{tx(stp["stop_s"]):.1f}" cy="{cy + 7 + jitter * 0.6:.1f}" '
                                 f'r="2.6" fill="{color[stp["lag"]]}"/>')
                    n += 1
            parts.append(f'<line x1="{tx(st["stop_mean"]):.1f}" y1="{cy}" x2="{tx(st["stop_mean"]):.1f}" '
                         f'y2="{cy + 14}" stroke="#212529" stroke-width="2"/>')
            y += row
        y += 18
    y += 20
    lx = 10
    for lag in lags:
        parts.append(f'<rect x="{lx}" y="{y - 9}" width="10" height="10" fill="{color[lag]}"/>')
        parts.append(f'<text x="{lx + 13}" y="{y}" class="n">lag {lag:g} s</text>')
        lx += 70
    for label, stroke, dash, width in (("mean stop time", "#212529", "", 2),
                                       ("mean lag", "#495057", "4 3", 1),
                                       ("worst lag", "#c92a2a", "2 2", 1)):
        parts.append(f'<line x1="{lx + 4}" y1="{y - 10}" x2="{lx + 4}" y2="{y + 1}" stroke="{stroke}" '
                     f'stroke-width="{width}"' + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        parts.append(f'<text x="{lx + 10}" y="{y}" class="n">{label}</text>')
        lx += 20 + 6 * len(label)
    h = y + 12
    style = ("<style>text{font-family:sans-serif;fill:#212529}.t{font-size:13px;font-weight:bold}"
             ".p{font-size:12px;font-weight:bold}.h{font-size:11px;fill:#495057}"
             ".l{font-size:11px}.v{font-size:10px}.n{font-size:10px}</style>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}">{style}<rect width="{w}" height="{h}" fill="#fff"/>'
            + "".join(parts) + "</svg>\n")


# ---------------------------------------------------------------------------


def kind_of(d):
    """'drain' for the drain comparison, 'inits' for the comparison of inits
    (whose older results have no balancer paths)."""
    return "drain" if "paths" in d["meta"] and all(
        s in ("nodrain", "fixed", "fixed-long", "adaptive") for s in d["meta"]["scenarios"]) else "inits"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--table", required=True)
    ap.add_argument("--chart", required=True)
    ap.add_argument("--doc", help="a markdown file whose generated section to replace")
    ap.add_argument("--chart-link", help="the chart's path as the doc links it")
    ap.add_argument("--source", help="the results' path as the doc names it (default: RESULTS)")
    a = ap.parse_args()
    d = json.load(open(a.results))
    kind = kind_of(d)
    source = a.source or a.results
    with open(a.chart, "w") as f:
        f.write(drain_chart(d) if kind == "drain" else inits_chart(d))
    text = (drain_section if kind == "drain" else inits_section)(d, a.chart_link or a.chart, source)
    with open(a.table, "w") as f:
        f.write(text + "\n")
    if a.doc:
        begin, end = MARKERS[kind]
        doc = open(a.doc).read()
        i, j = doc.find(begin), doc.find(end)
        if i < 0 or j < i:
            raise SystemExit(f"report.py: no {begin} ... {end} section in {a.doc}")
        with open(a.doc, "w") as f:
            f.write(doc[:i] + text + doc[j + len(end):])
    print(setup_text(d) + "\n" + claim_text(d) if kind == "drain" else inits_headline(d))


if __name__ == "__main__":
    main()
