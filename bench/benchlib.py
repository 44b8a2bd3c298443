#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

Subcommands:
  freeport                         print a free loopback TCP port
  coldstart [opts] -- CMD...       time spawn -> first 200 on GET /health;
                                   "{addr}" in CMD is replaced by host:port
  summarize OUT_DIR                read the raw results in OUT_DIR, write
                                   summary.json + summary.md, print the table
"""

import argparse
import glob
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HOST = "127.0.0.1"


# ------------------------------------------------------------------ ports ---

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stop(server, timeout=30):
    """SIGTERM a server we started, wait for it to drain and exit (kill it after `timeout` s); its exit status."""
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()


# ------------------------------------------------------------- cold start ---

HEALTH_REQ = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def health_ok(port):
    """One attempt: True iff GET /health answers with status 200."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as s:
            s.sendall(HEALTH_REQ)
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(256)
                if not chunk:
                    break
                buf += chunk
            return buf.startswith(b"HTTP/1.1 200") or buf.startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def one_launch(cmd, env, timeout_s, log):
    port = free_port()
    argv = [a.replace("{addr}", f"{HOST}:{port}") for a in cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log)
    elapsed = None
    try:
        deadline = t0 + timeout_s
        while True:
            if health_ok(port):
                elapsed = time.perf_counter() - t0
                break
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before /health was 200")
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no 200 on /health within {timeout_s}s")
            # Tight loop, but yield the CPU a little: on a 2-core box the
            # server we are timing needs it. ~0.1-0.2 ms granularity.
            time.sleep(0.0001)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return elapsed


def cmd_coldstart(args):
    if not args.cmd:
        sys.exit("coldstart: missing command after --")
    cmd = args.cmd[1:] if args.cmd[0] == "--" else args.cmd
    env = dict(os.environ)
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    log = open(args.log, "ab") if args.log else subprocess.DEVNULL
    samples, failures = [], []
    try:
        for i in range(args.warmup + args.runs):
            try:
                t = one_launch(cmd, env, args.timeout, log)
            except RuntimeError as e:
                failures.append(str(e))
                continue
            finally:
                time.sleep(args.pause)
            if i >= args.warmup:
                samples.append(t * 1000.0)
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    res = {
        "cmd": cmd,
        "runs": args.runs,
        "warmup_discarded": args.warmup,
        "failures": failures,
        "samples_ms": [round(s, 3) for s in samples],
    }
    if samples:
        srt = sorted(samples)
        res.update({
            "median_ms": round(statistics.median(samples), 3),
            "min_ms": round(srt[0], 3),
            "max_ms": round(srt[-1], 3),
            "p90_ms": round(srt[min(len(srt) - 1, int(0.9 * len(srt)))], 3),
        })
    out = json.dumps(res, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(out + "\n")
    print(out)
    if failures or not samples:
        sys.exit(1)


# -------------------------------------------------------------- summarize ---

def read_meta(out):
    meta = {}
    path = os.path.join(out, "meta.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if "=" in line:
                    k, _, v = line.partition("=")
                    meta[k] = v
    return meta


def parse_wrk(path):
    with open(path) as f:
        for line in f:
            if line.startswith("WRKJSON "):
                d = json.loads(line[len("WRKJSON "):])
                secs = d["duration_us"] / 1e6
                bad = d["err_status"]
                d["ok_requests"] = d["requests"] - bad
                d["rps"] = d["ok_requests"] / secs if secs > 0 else 0.0
                d["errors"] = (d["err_connect"] + d["err_read"] + d["err_write"]
                               + d["err_status"] + d["err_timeout"])
                return d
    return None


def parse_rate(path, target_rate):
    """A fixed-rate result: mcpgate-bench-rate's JSON or oha's --output-format json."""
    with open(path) as f:
        d = json.load(f)
    if d.get("tool") == "mcpgate-bench-rate":
        # It records the rate it was asked for: that, rather than meta.txt, is what ran.
        target_rate = d.get("target_rps") or target_rate
        lat = d["latency_ms"]
        achieved = d["achieved_rps"]
        return {
            "ok_requests": d["ok"],
            "non2xx": d["non2xx"] + d["bad_body"],
            "errors": d["timeouts"] + d["io_errors"],
            "achieved_rps": achieved,
            "target_rps": target_rate,
            "sustained": target_rate > 0 and achieved >= 0.95 * target_rate,
            "p50_ms": lat["p50"],
            "p90_ms": lat["p90"],
            "p99_ms": lat["p99"],
            "p999_ms": lat["p999"],
            "max_ms": lat["max"],
            "uncorrected_p99_ms": d["uncorrected_latency_ms"]["p99"],
        }
    summ = d.get("summary", {})
    codes = d.get("statusCodeDistribution", {}) or {}
    ok = sum(int(n) for c, n in codes.items() if str(c).startswith("2"))
    total = sum(int(n) for n in codes.values())
    errs = sum(int(n) for n in (d.get("errorDistribution", {}) or {}).values())
    total_time = summ.get("total") or 0.0
    pct = d.get("latencyPercentiles", {}) or {}

    def ms(key):
        v = pct.get(key)
        return None if v is None else v * 1000.0

    achieved = ok / total_time if total_time else 0.0
    return {
        "ok_requests": ok,
        "non2xx": total - ok,
        "errors": errs,
        "achieved_rps": achieved,
        "target_rps": target_rate,
        "sustained": target_rate > 0 and achieved >= 0.95 * target_rate,
        "p50_ms": ms("p50"),
        "p90_ms": ms("p90"),
        "p99_ms": ms("p99"),
        "p999_ms": ms("p99.9"),
        "max_ms": (summ.get("slowest") or 0.0) * 1000.0,
    }


def fmt_ms(v):
    return "n/a" if v is None else f"{v:.2f}"


def fmt_k(v):
    return "n/a" if v is None else f"{v/1000:.1f}k"


def fmt_mb(kb):
    return "n/a" if kb is None else f"{int(kb)/1024:.1f}"


def fmt_us(v, unit=""):
    return "n/a" if v is None else f"{v:+.0f}{unit}"


def fmt_rate(rate):
    """A fixed rate as a column label: 20000 -> "@20k"."""
    return f"@{rate/1000:g}k"


def target_rate(meta, t):
    """The fixed rate a target was measured at: meta rate.<target>, else the run's rate (runs before per-target
    rates)."""
    return int(meta.get(f"rate.{t}") or meta.get("rate") or 0)


# The proxy targets: added p50 latency vs the direct call, at this fixed rate.
PROXY_TARGET_RATE = 5000
PROXY_P50_ADDED_MAX_US = {"mcpgate-proxy-stdio": 100.0, "mcpgate-proxy-http": 50.0}
# The floor of a proxy hop (bench/ceiling's relays in front of a plain ceiling, same run), per transport: what
# the machine charges any tokio + hyper proxy, to tell mcpgate's own share of its added latency.
FLOOR_OF = {"mcpgate-proxy-http": "floor-proxy-http", "mcpgate-proxy-stdio": "floor-proxy-stdio"}
# ... and stdio proxy throughput vs supergateway (same upstream, same session shape, same run).
STDIO_VS_MIN_RATIO = 10.0
# The policy pipeline (issue 5): echo with every policy on costs at most this share of the all-off throughput.
PIPELINE_MAX_COST = 0.15


def pipeline_cost(summary, meta):
    """Throughput and latency of the echo with every policy on vs all off (meta policy_baseline /
    policy_target), from the medians of the same run."""
    base, t = meta.get("policy_baseline"), meta.get("policy_target")
    if not base or not t:
        return {}
    th, bth = summary["throughput"].get(t, {}), summary["throughput"].get(base, {})
    fr, bfr = summary["fixed_rate"].get(t, {}), summary["fixed_rate"].get(base, {})
    rps, brps = th.get("rps_median"), bth.get("rps_median")
    # Each round ran the two back to back (order swapped every other round): the cost of each pair, whose
    # median the machine's drift between rounds does not move as it moves the ratio of the two medians.
    # A round whose partner has no result stays in the list as None (shown as n/a), out of the median.
    base_by_round = {r["round"]: r["rps"] for r in bth.get("rounds", []) if r.get("round") is not None}
    pairs = [1.0 - r["rps"] / base_by_round[r["round"]] if base_by_round.get(r.get("round")) else None
             for r in th.get("rounds", [])]
    measured = [c for c in pairs if c is not None]

    def diff_us(a, b):
        return None if a is None or b is None else (a - b) * 1000.0

    return {
        "baseline": base,
        "target": t,
        "cost": statistics.median(measured) if measured else None,
        "pair_costs": pairs,
        "cost_of_medians": 1.0 - rps / brps if rps is not None and brps else None,
        "max_p50_added_us": diff_us(th.get("p50_ms_median"), bth.get("p50_ms_median")),
        "rate_p50_added_us": diff_us(fr.get("p50_ms_median"), bfr.get("p50_ms_median")),
        "rate_p99_added_us": diff_us(fr.get("p99_ms_median"), bfr.get("p99_ms_median")),
    }


def pipeline_cost_md(summary, meta):
    pc = summary["pipeline_cost"]
    if not pc:
        return []
    def pct(x):
        return "n/a" if x is None else f"{x * 100:.1f}%"

    rounds = ", ".join(pct(c) for c in pc["pair_costs"]) or "n/a"
    return ["### Policy pipeline cost", "",
            f"`{pc['target']}` is the built-in echo with every policy on (API key, authorization globs, global / "
            "per-key / per-tool rate limits set high enough never to refuse, audit log written and "
            f"flushed per call; cache off) against `{pc['baseline']}`, the default config (all off), same run. "
            "Each round runs the two back to back, in the other order every other round; the cost is the median "
            "of the rounds' costs (each round's, and the cost between the two medians, beside it).", "",
            "| throughput cost (median of rounds) | each round | between medians | max: p50 added µs | "
            "fixed rate: p50 added µs | fixed rate: p99 added µs |",
            "|---:|---|---:|---:|---:|---:|",
            f"| {pct(pc['cost'])} | {rounds} | {pct(pc['cost_of_medians'])} | {fmt_us(pc['max_p50_added_us'])} | "
            f"{fmt_us(pc['rate_p50_added_us'])} | {fmt_us(pc['rate_p99_added_us'])} |", ""]


def proxy_overhead(summary, meta, base_key="proxy_baseline", targets_key="proxy_targets"):
    """Added latency of each proxy target vs the direct call to its upstream, in microseconds.

    Only when the run has the proxy targets (meta proxy_baseline / proxy_targets: mcpgate's proxies; or
    floor_baseline / floor_targets: the floor relays). Latency differences are median-of-rounds minus
    median-of-rounds, at max throughput (wrk) and at the fixed rate."""
    base = meta.get(base_key)
    proxies = [t for t in meta.get(targets_key, "").split(",") if t]
    if not base or not proxies:
        return {}
    bth = summary["throughput"].get(base, {})
    bfr = summary["fixed_rate"].get(base, {})

    def diff_us(a, b):
        return None if a is None or b is None else (a - b) * 1000.0

    out = {}
    for t in proxies:
        th = summary["throughput"].get(t)
        fr = summary["fixed_rate"].get(t, {})
        if not th:
            continue
        rps, brps = th.get("rps_median"), bth.get("rps_median")
        out[t] = {
            "baseline": base,
            "rps_ratio": rps / brps if rps is not None and brps else None,
            "max_p50_added_us": diff_us(th.get("p50_ms_median"), bth.get("p50_ms_median")),
            "max_p99_added_us": diff_us(th.get("p99_ms_median"), bth.get("p99_ms_median")),
            "rate_p50_added_us": diff_us(fr.get("p50_ms_median"), bfr.get("p50_ms_median")),
            "rate_p99_added_us": diff_us(fr.get("p99_ms_median"), bfr.get("p99_ms_median")),
            "rate_sustained": bool(fr.get("sustained")) and bool(bfr.get("sustained")),
        }
    return out


def overhead_table(po, meta, base):
    """The rows shared by the proxy overhead and proxy floor tables: rps ratio and added p50 / p99 per proxy."""
    rate = target_rate(meta, base)
    k = fmt_rate(rate)
    L = [f"| proxy | rps vs {base} | max: p50 added µs | max: p99 added µs | {k}: p50 added µs | "
         f"{k}: p99 added µs |",
         "|---|---:|---:|---:|---:|---:|"]
    for t, o in po.items():
        ratio = "n/a" if o["rps_ratio"] is None else f"{o['rps_ratio']:.2f}x"
        r50, r99 = fmt_us(o["rate_p50_added_us"]), fmt_us(o["rate_p99_added_us"])
        if o["rate_p50_added_us"] is not None and not o["rate_sustained"]:
            r50 += " (rate not sustained)"
        if target_rate(meta, t) != rate:
            r50 += f" (proxy at {target_rate(meta, t)} req/s)"
        L.append(f"| {t} | {ratio} | {fmt_us(o['max_p50_added_us'])} | {fmt_us(o['max_p99_added_us'])} | "
                 f"{r50} | {r99} |")
    L.append("")
    return L


def floor_shares(po, fo):
    """Per mcpgate proxy with a floor in the run: its added p50 at the fixed rate minus the floor's for the same
    transport (FLOOR_OF), in µs — mcpgate's own share of the hop — stored in po[t] ("floor",
    "rate_p50_added_minus_floor_us")."""
    for t, o in po.items():
        floor = FLOOR_OF.get(t)
        if floor in fo:
            a, b = o["rate_p50_added_us"], fo[floor]["rate_p50_added_us"]
            o["floor"] = floor
            o["rate_p50_added_minus_floor_us"] = None if a is None or b is None else a - b


def own_share(po, fo, meta):
    """One markdown line per proxy with a floor share ([`floor_shares`])."""
    L = []
    for t, o in po.items():
        floor = o.get("floor")
        if not floor:
            continue
        f = fo[floor]
        a, b = o["rate_p50_added_us"], f["rate_p50_added_us"]
        share = o["rate_p50_added_minus_floor_us"]
        notes = []
        if share is not None and not (o["rate_sustained"] and f["rate_sustained"]):
            notes.append("rate not sustained")
        if target_rate(meta, t) != target_rate(meta, floor):
            notes.append(f"measured at {target_rate(meta, t)} / {target_rate(meta, floor)} req/s")
        note = f" ({'; '.join(notes)})" if notes else ""
        k = fmt_rate(target_rate(meta, t))
        L.append(f"- `{t}`: p50 added {k} {fmt_us(a, ' µs')}, minus the floor's (`{floor}`, {fmt_us(b, ' µs')}) = "
                 f"**{fmt_us(share, ' µs')}** of its own{note}")
    if L:
        L.append("")
    return L


def proxy_overhead_md(summary, meta):
    po = summary["proxy_overhead"]
    if not po:
        return []
    base = meta.get("proxy_baseline")
    rate = target_rate(meta, base)
    k = fmt_rate(rate)
    L = ["### Proxy overhead", "",
         f"Added latency (µs) and throughput of each proxy vs `{base}` (the same echo call straight to the "
         "upstream mcpgate), from the medians above. At max throughput the latencies are queueing at "
         f"saturation (three processes share the CPUs); the {k} columns are the open-loop service latency, "
         f"with the proxy and `{base}` both at {rate} req/s. The issue's targets (p50 added at "
         f"{PROXY_TARGET_RATE} req/s: ≤ 100 µs stdio, ≤ 50 µs HTTP) are checked under Targets below.", ""]
    L.extend(overhead_table(po, meta, base))
    share = own_share(po, summary["proxy_floor"], meta)
    if share:
        L.extend(["mcpgate's own share of the hop: each proxy's added p50 minus the floor's for the same "
                  "transport (Proxy floor, below), same run.", ""])
        L.extend(share)
    return L


def proxy_floor_md(summary, meta):
    fo = summary["proxy_floor"]
    if not fo:
        return []
    base = meta.get("floor_baseline")
    L = ["### Proxy floor", "",
         f"What one proxy hop costs on this machine: the smallest honest relays (bench/ceiling, tokio + hyper "
         "like mcpgate: parse the request, give it a fresh id, forward it, restore the client's id in the "
         "answer) in front of a plain ceiling, `floor-proxy-http` over a pooled keep-alive HTTP/1.1 client and "
         "`floor-proxy-stdio` over the pipes of a `--stdio` ceiling child, vs `"
         f"{base}` (the same request straight to that ceiling), from the medians above.", ""]
    L.extend(overhead_table(fo, meta, base))
    return L


def stdio_vs(summary, meta):
    """Throughput of mcpgate's stdio proxy vs supergateway fronting the same stdio upstream (same run).

    Only when the run has them (meta stdio_vs_baseline / stdio_vs_targets; the first target is the like-for-like
    one, checked against STDIO_VS_MIN_RATIO)."""
    base = meta.get("stdio_vs_baseline")
    targets = [t for t in meta.get("stdio_vs_targets", "").split(",") if t]
    if not base or not targets:
        return {}
    brps = summary["throughput"].get(base, {}).get("rps_median")
    out = {}
    for t in targets:
        rps = summary["throughput"].get(t, {}).get("rps_median")
        out[t] = {"baseline": base, "rps_ratio": rps / brps if rps is not None and brps else None}
    return out


def stdio_vs_md(summary, meta):
    sv = summary["stdio_vs"]
    if not sv:
        return []
    base = meta.get("stdio_vs_baseline")
    rates = {target_rate(meta, t) for t in [base, *sv]}
    k = fmt_rate(rates.pop()) if len(rates) == 1 else "@rate"
    L = [f"### stdio proxy vs {base}", "",
         f"The same upstream (`mcpgate serve --stdio`, default config, as a child process) behind mcpgate's stdio "
         f"proxy and behind {meta.get('supergateway', base)}. `mcpgate-proxy-stdio-legacy` and `{base}` are "
         "called alike: one 2025-11-25 session per load run; `mcpgate-proxy-stdio` is the stateless 2026-07-28 "
         f"call to the same front. rps ratio = median max rps / `{base}`'s; the {k} columns are the fixed-rate "
         "run.", "",
         f"| target | max rps | vs {base} | p50 ms | p99 ms | {k}: achieved rps | {k}: p50 ms | {k}: p99 ms |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for t in [*sv, base]:
        th = summary["throughput"].get(t, {})
        fr = summary["fixed_rate"].get(t, {})
        ratio = "—" if t == base or sv[t]["rps_ratio"] is None else f"{sv[t]['rps_ratio']:.1f}x"
        L.append(f"| {t} | {fmt_k(th.get('rps_median'))} | {ratio} | {fmt_ms(th.get('p50_ms_median'))} | "
                 f"{fmt_ms(th.get('p99_ms_median'))} | {fmt_achieved(fr)} | {fmt_ms(fr.get('p50_ms_median'))} | "
                 f"{fmt_ms(fr.get('p99_ms_median'))} |")
    L.append("")
    return L


def fmt_achieved(fr):
    """A fixed-rate entry's achieved rps cell, flagged when the rate was not sustained or answers failed."""
    if not fr:
        return "n/a"
    ach = fmt_k(fr.get("achieved_rps_median"))
    if not fr.get("sustained", False):
        ach += " (**not sustained**)"
    if fr.get("non2xx_or_errors"):
        ach += f" (**{fr['non2xx_or_errors']} errors/non-2xx**)"
    return ach


def cmd_summarize(args):
    out = args.out
    meta = read_meta(out)
    targets = [t for t in meta.get("targets", "").split(",") if t]
    baseline = meta.get("baseline", "ceiling")
    rates = {t: target_rate(meta, t) for t in targets}

    summary = {"meta": meta, "throughput": {}, "fixed_rate": {}, "rss_kb": {}, "cold_start": {}}

    for t in targets:
        rounds = []
        for p in glob.glob(os.path.join(out, "wrk", f"{t}.r*.txt")):
            d = parse_wrk(p)
            if d:
                m = re.search(r"\.r(\d+)\.txt$", p)
                d["round"] = int(m.group(1)) if m else None
                rounds.append(d)
        # In round order (as strings r10 would come before r2).
        rounds.sort(key=lambda d: (d["round"] is None, d["round"] or 0))
        if rounds:
            summary["throughput"][t] = {
                "rounds": rounds,
                "rps_median": statistics.median(r["rps"] for r in rounds),
                "p50_ms_median": statistics.median(r["lat_p50_us"] for r in rounds) / 1000.0,
                "p99_ms_median": statistics.median(r["lat_p99_us"] for r in rounds) / 1000.0,
                "errors_total": sum(r["errors"] for r in rounds),
            }
        runs = []
        # rate/ (current); oha/ in runs made before the builtin tool existed
        for p in sorted(glob.glob(os.path.join(out, "rate", f"{t}.r*.json"))
                        or glob.glob(os.path.join(out, "oha", f"{t}.r*.json"))):
            try:
                runs.append(parse_rate(p, rates[t]))
            except (OSError, ValueError, KeyError) as e:
                runs.append({"error": f"{os.path.basename(p)}: {e}"})
        good = [r for r in runs if "error" not in r]
        if runs:
            entry = {"target_rps": rates[t], "runs": runs}
            if good:
                entry.update({
                    "achieved_rps_median": statistics.median(r["achieved_rps"] for r in good),
                    "p50_ms_median": statistics.median(r["p50_ms"] for r in good if r["p50_ms"] is not None),
                    "p99_ms_median": statistics.median(r["p99_ms"] for r in good if r["p99_ms"] is not None),
                    "sustained": all(r["sustained"] for r in good),
                    "non2xx_or_errors": sum(r["non2xx"] + r["errors"] for r in good),
                })
            summary["fixed_rate"][t] = entry

    for k, v in meta.items():
        m = re.match(r"^(idle|after)_rss_kb\.(.+)$", k)
        if m:
            summary["rss_kb"].setdefault(m.group(2), {})[m.group(1)] = int(v)
        m = re.match(r"^hwm_kb\.(.+)$", k)
        if m:
            summary["rss_kb"].setdefault(m.group(1), {})["peak"] = int(v)
    for p in sorted(glob.glob(os.path.join(out, "cold", "*.json"))):
        with open(p) as f:
            summary["cold_start"][os.path.basename(p)[:-5]] = json.load(f)

    # ---- markdown
    base = summary["throughput"].get(baseline, {}).get("rps_median")
    L = []
    L.append(f"## mcpgate bench — {meta.get('started', '?')}")
    L.append("")
    L.append(f"- host: {meta.get('host', '?')}; wrk: {meta.get('wrk_version', '?')}")
    L.append(f"- mcpgate: `{meta.get('mcpgate_bin', 'n/a')}` (git {meta.get('git_rev', '?')})")
    L.append(f"- load average (1/5/15 min) at start: {meta.get('loadavg_start', '?')}; at end: {meta.get('loadavg_end', '?')}"
             " — anything well above 0 at start means other processes were competing for the CPUs")
    L.append(f"- max throughput: `wrk -t{meta.get('threads')} -c{meta.get('conns')} -d{meta.get('duration')}`, "
             f"{meta.get('rounds')} interleaved rounds, medians shown; only 2xx counted")
    by_rate = {}
    for t in targets:
        by_rate.setdefault(rates[t], []).append(t)
    if len(by_rate) > 1:
        per = ", ".join(f"{r} req/s ({', '.join(ts)})" for r, ts in by_rate.items())
    else:
        per = f"{next(iter(by_rate), int(meta.get('rate', '0') or 0))} req/s"
    L.append(f"- fixed rate: {per}, for {meta.get('rate_duration')} over {meta.get('rate_conns')} connections, "
             f"{meta.get('rate_rounds')} round(s), medians shown; tool: {meta.get('rate_tool', '?')}")
    if meta.get("supergateway"):
        L.append(f"- supergateway: {meta['supergateway']}")
    L.append("")
    L.append("### Throughput and latency")
    L.append("")
    # One rate for every target: it goes in the headers; several: a column of its own.
    k = fmt_rate(next(iter(by_rate))) if len(by_rate) == 1 else "@rate"
    rate_col = len(by_rate) > 1
    L.append(f"| target | max rps | p50 ms | p99 ms | vs {baseline} | rps per round | "
             + ("fixed rate | " if rate_col else "")
             + f"{k}: achieved rps | {k}: p50 ms | {k}: p99 ms |")
    L.append("|---|---:|---:|---:|---:|---|" + ("---:|" if rate_col else "") + "---:|---:|---:|")
    for t in targets:
        th = summary["throughput"].get(t, {})
        fr = summary["fixed_rate"].get(t, {})
        rps = th.get("rps_median")
        ratio = "—" if t == baseline or not base or rps is None else f"{rps/base:.2f}x"
        per_round = " / ".join(fmt_k(r["rps"]) for r in th.get("rounds", [])) or "n/a"
        if th.get("errors_total"):
            per_round += f" (**{th['errors_total']} errors/non-2xx**)"
        L.append(f"| {t} | {fmt_k(rps)} | {fmt_ms(th.get('p50_ms_median'))} | {fmt_ms(th.get('p99_ms_median'))} | "
                 f"{ratio} | {per_round} | " + (f"{fmt_k(rates[t])} | " if rate_col else "")
                 + f"{fmt_achieved(fr)} | {fmt_ms(fr.get('p50_ms_median'))} | {fmt_ms(fr.get('p99_ms_median'))} |")
    L.append("")
    # Computed once, before any section renders them (the JSON gets the same numbers the markdown shows).
    summary["proxy_overhead"] = proxy_overhead(summary, meta)
    summary["proxy_floor"] = proxy_overhead(summary, meta, "floor_baseline", "floor_targets")
    floor_shares(summary["proxy_overhead"], summary["proxy_floor"])
    summary["stdio_vs"] = stdio_vs(summary, meta)
    summary["pipeline_cost"] = pipeline_cost(summary, meta)
    L.extend(proxy_overhead_md(summary, meta))
    L.extend(proxy_floor_md(summary, meta))
    L.extend(stdio_vs_md(summary, meta))
    L.extend(pipeline_cost_md(summary, meta))
    L.append("### Memory and cold start")
    L.append("")
    L.append("| process | idle RSS MB | RSS after load MB | peak RSS MB | cold start median ms (min / p90 / max, n) |")
    L.append("|---|---:|---:|---:|---|")
    procs = sorted(set(summary["rss_kb"]) | set(summary["cold_start"]))
    for p in procs:
        r = summary["rss_kb"].get(p, {})
        c = summary["cold_start"].get(p)
        if c and "median_ms" in c:
            cs = (f"{c['median_ms']:.2f} ({c['min_ms']:.2f} / {c['p90_ms']:.2f} / {c['max_ms']:.2f}, "
                  f"n={len(c['samples_ms'])})")
            if c.get("failures"):
                cs += f" **{len(c['failures'])} failed launches**"
        else:
            cs = "n/a"
        L.append(f"| {p} | {fmt_mb(r.get('idle'))} | {fmt_mb(r.get('after'))} | {fmt_mb(r.get('peak'))} | {cs} |")
    L.append("")
    # targets check
    L.append("### Targets")
    L.append("")
    checks = []
    ceil_fr = summary["fixed_rate"].get(baseline, {})
    ceil_p99 = ceil_fr.get("p99_ms_median")
    for t in targets:
        # The targets apply to the built-in echo; the config-declared tools are measured beside it.
        if t in ("mcpgate-modern", "mcpgate-legacy") and base:
            rps = summary["throughput"].get(t, {}).get("rps_median")
            if rps is not None:
                checks.append((f"{t} rps >= 0.6x {baseline}", f"{rps/base:.2f}x", rps / base >= 0.6))
            fr = summary["fixed_rate"].get(t, {})
            if fr.get("p99_ms_median") is not None:
                ok = fr["p99_ms_median"] <= 3.0 and fr.get("sustained", False)
                val = f"{fr['p99_ms_median']:.2f} ms"
                if not fr.get("sustained"):
                    val += " (rate not sustained)"
                if ceil_p99 is not None:
                    val += f" ({baseline}: {ceil_p99:.2f} ms)"
                checks.append((f"{t} p99 <= 3 ms at {rates[t]} rps", val, ok))
    # The proxies: p50 added vs the direct call at PROXY_TARGET_RATE, both sustained (else the latencies are
    # backlog). At another rate the run says nothing about the target: n/a.
    for t, o in summary.get("proxy_overhead", {}).items():
        limit = PROXY_P50_ADDED_MAX_US.get(t)
        if limit is None or o["rate_p50_added_us"] is None:
            continue
        name = f"{t} p50 added <= {limit:g} µs at {fmt_rate(PROXY_TARGET_RATE)[1:]} (vs {o['baseline']}, sustained)"
        val = f"{o['rate_p50_added_us']:+.0f} µs"
        r, br = target_rate(meta, t), target_rate(meta, o["baseline"])
        if r != PROXY_TARGET_RATE or br != PROXY_TARGET_RATE:
            val += f" (measured at {r} / {br} req/s)"
            ok = None
        else:
            ok = o["rate_p50_added_us"] <= limit and o["rate_sustained"]
            if not o["rate_sustained"]:
                val += " (rate not sustained)"
        checks.append((name, val, ok))
    sv = summary.get("stdio_vs", {})
    if sv:
        first, o = next(iter(sv.items()))
        if o["rps_ratio"] is not None:
            val = f"{o['rps_ratio']:.1f}x"
            others = [f"{t}: {x['rps_ratio']:.1f}x" for t, x in sv.items() if t != first and x["rps_ratio"] is not None]
            if others:
                val += f" ({'; '.join(others)})"
            checks.append((f"stdio proxy throughput >= {STDIO_VS_MIN_RATIO:g}x {o['baseline']} ({first}, max rps)",
                           val, o["rps_ratio"] >= STDIO_VS_MIN_RATIO))
    pc = summary.get("pipeline_cost", {})
    if pc.get("cost") is not None:
        checks.append((f"{pc['target']}: every policy on costs <= {PIPELINE_MAX_COST:.0%} of {pc['baseline']}'s "
                       "throughput (max rps, median of paired rounds)", f"{pc['cost'] * 100:.1f}%",
                       pc["cost"] <= PIPELINE_MAX_COST))
    r = summary["rss_kb"].get("mcpgate", {})
    if "idle" in r:
        checks.append(("mcpgate idle RSS <= 15 MB", f"{r['idle']/1024:.1f} MB", r["idle"] <= 15 * 1024))
    c = summary["cold_start"].get("mcpgate", {})
    if "median_ms" in c:
        checks.append(("mcpgate cold start <= 20 ms", f"{c['median_ms']:.2f} ms", c["median_ms"] <= 20.0))
    if checks:
        L.append("| target | measured | met |")
        L.append("|---|---:|:---:|")
        for name, val, ok in checks:
            met = "n/a" if ok is None else "yes" if ok else "**no**"
            L.append(f"| {name} | {val} | {met} |")
    else:
        L.append("(no mcpgate targets in this run)")
    L.append("")
    md = "\n".join(L)
    summary["checks"] = [{"target": n, "measured": v, "met": ok} for n, v, ok in checks]
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(md)
    print(md)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="sub", required=True)
    sub.add_parser("freeport")
    cs = sub.add_parser("coldstart")
    cs.add_argument("--runs", type=int, default=20)
    cs.add_argument("--warmup", type=int, default=1, help="launches run first and discarded")
    cs.add_argument("--timeout", type=float, default=5.0, help="seconds per launch")
    cs.add_argument("--pause", type=float, default=0.05, help="seconds between launches")
    cs.add_argument("--env", action="append", default=[], help="K=V for the child")
    cs.add_argument("--out")
    cs.add_argument("--log", help="append the child's stdout/stderr here")
    cs.add_argument("cmd", nargs=argparse.REMAINDER)
    sm = sub.add_parser("summarize")
    sm.add_argument("out")
    args = ap.parse_args()
    if args.sub == "freeport":
        print(free_port())
    elif args.sub == "coldstart":
        cmd_coldstart(args)
    elif args.sub == "summarize":
        cmd_summarize(args)


if __name__ == "__main__":
    main()
