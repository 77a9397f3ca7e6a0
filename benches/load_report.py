"""Turns the raw JSON lines written by benches/load.sh into benches/RESULTS.md (printed on stdout).

Usage: python3 benches/load_report.py RAW.jsonl [METRICS.txt ...]

Input records: {"meta": {...}} (machine, versions, settings), {"scenario", "label", "transport", "skip"} (the
scenario table, in order), {"round", "id", "wrk", "cpu_s", "hwm_kib", "rate", "lat"} (one measured run; its hwm_kib is not
reported), {"rss", "conns", "hwm_kib", "wrk"} (peak RSS of a fresh process at CONNS or BIG_CONNS connections), {"idle", "conns", "before_kib", "after_kib"}
(idle TLS connections), {"warmup", "wrk"} (calibration, not reported). Python 3.11 standard library only.
"""

import json
import statistics
import sys


def rps(w):
    if not w or not w.get("duration_us"):
        return None
    return w["requests"] / (w["duration_us"] / 1e6)


def errors(w):
    return sum(w.get(k, 0) for k in ("non2xx", "connect_errors", "read_errors", "write_errors", "timeouts"))


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ms(us):
    return "—" if us is None else f"{us / 1000:.2f}"


def fmt_mib(kib):
    return "—" if not kib else f"{kib / 1024:.1f}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def load(path):
    meta, scenarios, runs, big, idle = {}, [], {}, {}, {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        if "meta" in r:
            meta = r["meta"]
        elif "scenario" in r:
            scenarios.append(r)
        elif "round" in r:
            runs.setdefault(r["id"], []).append(r)
        elif "rss" in r:
            big[(r["rss"], r["conns"])] = r
        elif "idle" in r:
            idle[r["idle"]] = r
    return meta, scenarios, runs, big, idle


def summarise(scenarios, runs, big, meta):
    out = {}
    for s in scenarios:
        rs = runs.get(s["scenario"], [])
        rates = [rps(r["wrk"]) for r in rs]
        rates = [x for x in rates if x is not None]
        reqs = sum(r["wrk"].get("requests", 0) for r in rs)
        cpu = sum(r["cpu_s"] for r in rs)
        lats = [r["lat"] for r in rs if r.get("lat")]
        b = big.get((s["scenario"], meta.get("big_conns")))
        small = big.get((s["scenario"], meta.get("conns")))
        out[s["scenario"]] = {
            "rounds": len(rs),
            "rps_med": median(rates),
            "rps_min": min(rates) if rates else None,
            "rps_max": max(rates) if rates else None,
            "rps_all": rates,
            "cpu_per_1k": (cpu / reqs * 1000) if reqs and cpu else None,
            "busy": median([r["cpu_s"] / (r["wrk"]["duration_us"] / 1e6) for r in rs if r["wrk"].get("duration_us")]),
            "hwm64": small["hwm_kib"] if small else 0,
            "hwm_big": b["hwm_kib"] if b else 0,
            "big_errors": (errors(b["wrk"]) if b else 0) + (errors(small["wrk"]) if small else 0),
            "errors": sum(errors(r["wrk"]) for r in rs) + sum(l.get("errors", 0) + l.get("non2xx", 0) for l in lats),
            "rate": rs[0]["rate"] if rs else None,
            "p50": median([l.get("p50_us") for l in lats]),
            "p99": median([l.get("p99_us") for l in lats]),
            "p99_max": max((l.get("p99_us", 0) for l in lats), default=None),
            "achieved": median([l.get("achieved_rps") for l in lats]),
            "missed": sum(l.get("missed", 0) for l in lats),
        }
    return out


def verdict(ok):
    return "**met**" if ok else "**not met**"


def targets(sm, idle, meta):
    lines = []

    def ratio(a, b):
        x, y = sm.get(a, {}).get("rps_med"), sm.get(b, {}).get("rps_med")
        return (x / y) if x and y else None

    def cpu_ratio(a, b):
        # Requests per CPU-second of a's proxy over b's: what the req/s ratio would be with a whole core each.
        x, y = sm.get(a, {}).get("cpu_per_1k"), sm.get(b, {}).get("cpu_per_1k")
        return (y / x) if x and y else None

    def ratio_line(label, a, b, want):
        r = ratio(a, b)
        if r is None:
            return None
        c = cpu_ratio(a, b)
        shown = f"{r:.2f}x" + (f" (by CPU time per request: {c:.2f}x)" if c is not None else "")
        if c is None or (r >= want) == (c >= want):
            v = verdict(r >= want)
        else:
            v = ("**inconclusive**: req/s and CPU time per request disagree (other load on the machine?); by CPU "
                 "time " + ("met" if c >= want else "not met"))
        return f"| {label} | ≥ {want}x | {shown} | {v} |"

    for tr, name in (("http", "HTTP/1.1"), ("tls", "TLS")):
        for label, a, b in (
            ("veil pass-through / nginx requests/s", f"pass-{tr}", f"nginx-{tr}"),
            ("veil pass-through / nginx requests/s, same 1 KiB POST", f"unpasspost-{tr}", f"nginxpost-{tr}"),
        ):
            line = ratio_line(f"{label} ({name})", a, b, 1.0)
            if line:
                lines.append(line)
        p_v, p_n = sm.get(f"pass-{tr}", {}).get("p99"), sm.get(f"nginx-{tr}", {}).get("p99")
        if p_v is not None and p_n is not None:
            lines.append(
                f"| veil pass-through p99 vs nginx p99 at {fmt_int(sm[f'pass-{tr}']['rate'])} req/s ({name}) "
                f"| ≤ nginx | {fmt_ms(p_v)} ms vs {fmt_ms(p_n)} ms | {verdict(p_v <= p_n)} |"
            )
    for tr, name in (("http", "HTTP/1.1"), ("tls", "TLS")):
        for label, a, want in (
            ("tokenising, repeated values / pass-through", f"rep-{tr}", 0.8),
            ("tokenising, unique values (SQLite, durable) / pass-through", f"uniq-{tr}", 0.5),
            ("tokenising, 1 new value (SQLite, durable) / pass-through", f"uniq1-{tr}", 0.5),
        ):
            line = ratio_line(f"{label} ({name})", a, f"pass-{tr}", want)
            if line:
                lines.append(line)
            # Like for like: the same POST passed through untouched (`unmatched = pass`: the `passpost` rows
            # detect, and so tokenise, what the body holds), so the ratio is what tokenising costs.
            line = ratio_line(f"{label} of the same POST ({name})", a, f"unpasspost-{tr}", want)
            if line:
                lines.append(line)
        # No CPU ratio: PostgreSQL's own work is not in the proxy's CPU time.
        for what, a in (("unique values", f"pg-{tr}"), ("1 new value", f"pg1-{tr}")):
            for base, of in ((f"pass-{tr}", ""), (f"unpasspost-{tr}", " of the same POST")):
                r = ratio(a, base)
                # Not measured: said once (why PostgreSQL did not run), or left out when only not selected.
                if r is None and (of or a not in sm or not meta.get("pg_note")):
                    continue
                lines.append(
                    f"| tokenising, {what} (PostgreSQL) / pass-through{of} ({name}) | ≥ 0.5x | "
                    + (f"{r:.2f}x | {verdict(r >= 0.5)} |" if r is not None else f"— | {meta.get('pg_note', 'not run')} |")
                )
    # VEIL_BIN_B: the second binary against the first, same rounds (no target: a comparison).
    for label, a, b in (
        ("VEIL_BIN_B / veil, pass-through GET (HTTP/1.1)", "passB-http", "pass-http"),
        ("VEIL_BIN_B / veil, repeated values (HTTP/1.1)", "repB-http", "rep-http"),
        ("VEIL_BIN_B / veil, unique values (HTTP/1.1)", "uniqB-http", "uniq-http"),
    ):
        r, c = ratio(a, b), cpu_ratio(a, b)
        if r is not None:
            lines.append(f"| {label} | measured | {r:.2f}x" + (f" (by CPU time per request: {c:.2f}x)" if c else "")
                         + " | — |")
    # What scanning requests no route takes costs ([proxy] unmatched = "detect", the default, over "pass").
    for label, a, b in (
        ("unmatched = detect / unmatched = pass, GET (HTTP/1.1)", "pass-http", "unpass-http"),
        ("unmatched = detect / unmatched = pass, same 1 KiB POST (HTTP/1.1)", "passpost-http", "unpasspost-http"),
    ):
        r = ratio(a, b)
        if r is not None:
            lines.append(f"| {label} | measured | {r:.2f}x | — |")
    veil_ids = [k for k in sm if k.split("-")[0] in
                ("pass", "passpost", "unpass", "unpasspost", "rep", "uniq", "uniq1", "pg", "pg1", "pgrep", "passB",
                 "repB", "uniqB")]
    peak64 = max((sm[k]["hwm64"] for k in veil_ids), default=0)
    if peak64:
        lines.append(f"| veil peak RSS at {meta.get('conns', 64)} connections (worst scenario) | ≤ 30 MiB | "
                     f"{fmt_mib(peak64)} MiB | {verdict(peak64 <= 30 * 1024)} |")
    v = idle.get("veil-tls")
    if v and v.get("conns"):
        per = (v["after_kib"] - v["before_kib"]) / v["conns"]
        lines.append(f"| veil RSS per extra idle TLS connection | ≤ 20 KiB | {per:.1f} KiB | {verdict(per <= 20)} |")
    return lines


def main():
    raw = sys.argv[1]
    meta, scenarios, runs, big, idle = load(raw)
    sm = summarise(scenarios, runs, big, meta)
    p = print
    p("# veil load benchmark: results")
    p()
    p("Written by `benches/load.sh` (see README, *Benchmarks*). All numbers are from one run on one machine; the")
    p("proxy under test is pinned to one core, the load generator and the upstream share the other.")
    p()
    p("## Machine and versions")
    p()
    p(f"- date: {meta.get('date')}; machine: {meta.get('nproc')} cores, {meta.get('cpu')}; kernel {meta.get('kernel')}")
    p(f"- load average at start / end: {meta.get('loadavg_start')} / {meta.get('loadavg_end')}"
      " (other work on the machine shares the cores and shows in the spread)")
    if meta.get("veil_bin_b"):
        p(f"- VEIL_BIN_B (the B rows): {meta.get('veil_bin_b')}")
    p(f"- veil {meta.get('veil_rev')} (release build); {meta.get('rustc')}; nginx {meta.get('nginx')};"
      f" {meta.get('wrk')}; {meta.get('openssl')}; benches/load_gen (open-loop, rustls)")
    p(f"- command: `{meta.get('command')}`")
    p(f"- {meta.get('rounds')} interleaved rounds (order rotated each round), {meta.get('duration')} s closed-loop wrk run"
      f" at {meta.get('conns')} connections, then a {meta.get('lat_duration')} s fixed-rate run, per scenario and round;"
      f" body {meta.get('body_bytes')} bytes")
    p(f"- fixed rates ({meta.get('rate_fraction')} of nginx's maximum in the warm-up): HTTP {fmt_int(meta.get('rate_http'))}"
      f" req/s, TLS {fmt_int(meta.get('rate_tls'))} req/s")
    if meta.get("pg_pin"):
        p(f"- PostgreSQL: {meta.get('pg_pin')}")
    p()
    p("## Results")
    p()
    p("| scenario | transport | req/s median (min–max) | p50 / p99 ms at fixed rate (worst p99) | achieved rate"
      f" | CPU s / 1,000 req | proxy core busy | peak RSS MiB @{meta.get('conns')} | @{meta.get('big_conns')} | errors |")
    p("|---|---|---|---|---|---|---|---|---|---|")
    for s in scenarios:
        r = sm[s["scenario"]]
        tr = "HTTP/1.1" if s["transport"] == "http" else "TLS"
        if s.get("skip"):
            p(f"| {s['label']} | {tr} | {s['skip']} | | | | | | | |")
            continue
        rng = f"{fmt_int(r['rps_med'])} ({fmt_int(r['rps_min'])}–{fmt_int(r['rps_max'])})"
        lat = f"{fmt_ms(r['p50'])} / {fmt_ms(r['p99'])} ({fmt_ms(r['p99_max'])})"
        ach = "—" if r["achieved"] is None else f"{fmt_int(r['achieved'])} / {fmt_int(r['rate'])}"
        if r["missed"]:
            ach += f" ({fmt_int(r['missed'])} due, never sent)"
        cpu = "—" if r["cpu_per_1k"] is None else f"{r['cpu_per_1k']:.3f}"
        busy = "—" if not r["busy"] else f"{r['busy'] * 100:.0f}%"
        p(f"| {s['label']} | {tr} | {rng} | {lat} | {ach} | {cpu} | {busy} | {fmt_mib(r['hwm64'])} | {fmt_mib(r['hwm_big'])}"
          f" | {r['errors'] + r['big_errors']} |")
    p()
    p("*Proxy core busy*: the proxy's CPU seconds per second during the wrk run (median over rounds); well under 100%")
    p("means its throughput was bounded elsewhere (the load generator's core, or other work on the machine).")
    p("Direct-to-upstream rows measure the upstream and load generator sharing one core (no proxy process: no CPU or")
    p("RSS column). An achieved rate below the fixed rate means the proxy could not keep up: its latency then")
    p("includes the queue that built up (the generator measures from when each request was due), and requests still")
    p("queued in the generator when the run ended are counted as never sent, not as latencies.")
    p("*Peak RSS*: VmHWM of a freshly started proxy process (same config and store) after a"
      f" {min(int(meta.get('duration', 5)), 5)} s wrk run of that scenario alone at that many connections, measured"
      " after the rounds.")
    p()
    p("## Idle TLS connections")
    p()
    p("| proxy | connections | open at the server when measured | RSS before (MiB) | RSS with them open (MiB)"
      " | per connection |")
    p("|---|---|---|---|---|---|")
    for name, label in (("nginx-tls", "nginx worker"), ("veil-tls", "veil")):
        v = idle.get(name)
        if v and v.get("conns"):
            per = (v["after_kib"] - v["before_kib"]) / v["conns"]
            p(f"| {label} | {v['conns']} | {v.get('open', '?')} | {fmt_mib(v['before_kib'])} | {fmt_mib(v['after_kib'])}"
              f" | {per:.1f} KiB |")
    p()
    p("Measured last, on restarted processes after a few warm-up requests: N connections with completed TLS handshakes")
    p("and no request, RSS (VmRSS) delta / N.")
    p()
    p("## Targets from issues 6 and 25")
    p()
    p("Verdicts use the requests/s medians. The figure in brackets divides the proxies' CPU seconds per request,")
    p("which depends less on other work sharing the machine during the run. The four ratios of issue 25:")
    p("pass-through / nginx, repeated / pass-through, unique SQLite / pass-through, unique PostgreSQL / pass-through")
    p("(each with four new values a request, and with one).")
    p()
    p("| target | wanted | measured | |")
    p("|---|---|---|---|")
    for line in targets(sm, idle, meta):
        p(line)
    p()
    p("## Requests/s per round")
    p()
    p("| scenario | " + " | ".join(f"round {i + 1}" for i in range(int(meta.get("rounds", 0)))) + " |")
    p("|---|" + "---|" * int(meta.get("rounds", 0)))
    for s in scenarios:
        if s.get("skip"):
            continue
        cells = [fmt_int(x) for x in sm[s["scenario"]]["rps_all"]]
        p(f"| {s['scenario']} | " + " | ".join(cells) + " |")
    if len(sys.argv) > 2:
        p()
        p("## What veil counted (its /metrics at the end of the run)")
        p()
        p("```")
        for path in sys.argv[2:]:
            p(f"# {path.rsplit('/', 1)[-1]}")
            for line in open(path, encoding="utf-8"):
                if line.strip():
                    p(line.rstrip())
        p("```")


if __name__ == "__main__":
    main()
