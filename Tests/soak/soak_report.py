#!/usr/bin/env python3
"""Reads what Tests/soak/*.sh collected (wrk output with the Lua script's `SOAK ...` lines, RSS samples, shutdown
timings), prints a summary table and exits non-zero when an assertion fails.

    soak_report.py soak     WRK_OUT RSS_TSV REQUESTS RSS_TOLERANCE_PCT FDS_IDLE_BEFORE FDS_IDLE_AFTER
    soak_report.py shutdown WRK_OUT FACTS_FILE
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

EXPECTED = {"valid": {200}, "expired": {401}, "forged": {401}, "unknown": set()}


def parse_wrk(path: str) -> dict:
    """The `SOAK key values...` lines printed by the Lua done() hook, plus wrk's own summary text."""
    out: dict = {"status": {}, "sent": {}, "identity_ok": 0, "errors": {}, "latency": {}, "text": ""}
    text = Path(path).read_text(errors="replace")
    out["text"] = text
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] != "SOAK":
            continue
        key, vals = parts[1], parts[2:]
        if key == "status":  # SOAK status <token> <code> <count>
            out["status"].setdefault(vals[0], {})[int(vals[1])] = int(vals[2])
        elif key == "sent":
            out["sent"][vals[0]] = int(vals[1])
        elif key == "identity_ok":
            out["identity_ok"] = int(vals[0])
        elif key == "errors":  # connect read write status timeout
            out["errors"] = dict(zip(["connect", "read", "write", "status", "timeout"], map(int, vals)))
        elif key == "latency_us":  # p50 p90 p99 p999 max mean
            out["latency"] = dict(zip(["p50", "p90", "p99", "p99.9", "max", "mean"], map(float, vals)))
        elif key in ("requests", "duration_us", "bytes"):
            out[key] = int(vals[0])
    return out


def status_failures(w: dict) -> list[str]:
    problems = []
    for token, codes in w["status"].items():
        allowed = EXPECTED.get(token, set())
        for code, n in codes.items():
            if code not in allowed:
                problems.append(f"{n} x {code} for the {token} token (want only {sorted(allowed) or 'none'})")
    valid_200 = w["status"].get("valid", {}).get(200, 0)
    if w["identity_ok"] != valid_200:
        problems.append(f"{valid_200 - w['identity_ok']} of {valid_200} valid 200s did not carry x-auth-sub=soak-user upstream")
    return problems


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 44 + "+"
    body = "\n".join(f"| {k.ljust(width)} | {v[:42].ljust(42)} |" for k, v in rows)
    return f"{line}\n{body}\n{line}"


def ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def soak(wrk_out: str, rss_tsv: str, requests: int, tolerance: float, fds_before: int, fds_after: int) -> int:
    w = parse_wrk(wrk_out)
    failures = status_failures(w)
    errs = w["errors"]
    for kind in ("connect", "read", "write", "timeout"):
        if errs.get(kind, 0):
            failures.append(f"{errs[kind]} socket {kind} errors")
    done = sum(sum(c.values()) for c in w["status"].values())
    if done < requests:
        failures.append(f"only {done} responses counted, want {requests}")

    samples = []
    for line in Path(rss_tsv).read_text().splitlines():
        t, rss, fds = line.split()
        samples.append((float(t), int(rss), int(fds)))
    rss = [s[1] for s in samples]
    rows = [("requests (responses counted)", f"{done:,}"),
            ("duration", f"{w.get('duration_us', 0) / 1e6:.1f} s"),
            ("throughput", f"{done / max(w.get('duration_us', 1) / 1e6, 1e-9):,.0f} req/s")]
    for token in ("valid", "expired", "forged", "unknown"):
        codes = w["status"].get(token)
        if codes or token != "unknown":
            rows.append((f"{token} token statuses", ", ".join(f"{c}: {n:,}" for c, n in sorted((codes or {}).items())) or "-"))
    rows.append(("valid 200s with x-auth-sub upstream", f"{w['identity_ok']:,}"))
    rows.append(("socket errors c/r/w/timeout", "/".join(str(errs.get(k, "?")) for k in ("connect", "read", "write", "timeout"))))
    lat = w["latency"]
    if lat:
        rows.append(("latency p50 / p99", f"{ms(lat['p50'])} / {ms(lat['p99'])}"))
        rows.append(("latency p99.9 / max", f"{ms(lat['p99.9'])} / {ms(lat['max'])}"))
    if len(samples) >= 4:
        q = max(1, len(rss) // 4)
        first, last = statistics.mean(rss[:q]), statistics.mean(rss[-q:])
        drift = (last - first) / first * 100
        rows.append(("RSS samples", f"{len(rss)} (every {samples[1][0] - samples[0][0]:.1f} s)"))
        rows.append(("RSS first quarter mean", f"{first / 1024:.1f} MiB"))
        rows.append(("RSS last quarter mean", f"{last / 1024:.1f} MiB"))
        rows.append(("RSS drift (limit ±%g %%)" % tolerance, f"{drift:+.2f} %"))
        rows.append(("RSS min / max", f"{min(rss) / 1024:.1f} / {max(rss) / 1024:.1f} MiB"))
        rows.append(("fds under load (max)", f"{max(s[2] for s in samples)}"))
        if abs(drift) > tolerance:
            failures.append(f"RSS not flat: {first / 1024:.1f} MiB -> {last / 1024:.1f} MiB ({drift:+.2f} %, limit ±{tolerance} %)")
    else:
        failures.append(f"only {len(samples)} RSS samples: run longer (or lower SOAK_SAMPLE_S) to judge flatness")
    rows.append(("fds idle before / after the run", f"{fds_before} / {fds_after}"))
    if fds_after > fds_before + 8:
        failures.append(f"fd leak: {fds_before} fds idle before the run, {fds_after} after")
    rows.append(("verdict", "PASS" if not failures else "FAIL"))
    print(table(rows))
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


def shutdown(wrk_out: str, facts_file: str) -> int:
    w = parse_wrk(wrk_out)
    facts = dict(line.split("=", 1) for line in Path(facts_file).read_text().splitlines() if "=" in line)
    failures = status_failures(w)
    errs = w["errors"]
    for kind in ("read", "timeout"):
        if errs.get(kind, 0):
            failures.append(f"{errs[kind]} wrk socket {kind} errors: requests on established connections got no response")
    ka = json.loads(Path(facts["keepalive_json"]).read_text()) if facts.get("keepalive_json") else {}
    if ka.get("dropped", 1):
        failures.append(f"keep-alive clients: {ka.get('dropped')} requests written and then dropped without a response "
                        f"(first events: {ka.get('events', [])[:3]})")
    bad = {c: n for c, n in ka.get("statuses", {}).items() if c != "200"}
    if bad:
        failures.append(f"keep-alive clients got non-200 statuses {bad}")
    slow = facts.get("slow_statuses", "").split()
    if not slow or any(s != "200" for s in slow):
        failures.append(f"in-flight slow requests did not all complete with 200: {slow}")
    for key in ("probe_1", "probe_2"):
        v = facts.get(key, "")
        if not v.startswith("refused"):
            failures.append(f"new connection after SIGTERM ({key}): {v}")
    exit_s = float(facts.get("exit_after_s", "inf"))
    deadline = float(facts["deadline_s"])
    if exit_s >= deadline:
        failures.append(f"sidecar still running {exit_s:.2f} s after SIGTERM (deadline {deadline} s)")
    if facts.get("exit_code") != "0":
        failures.append(f"sidecar exit code {facts.get('exit_code')}")
    if facts.get("probe_while_draining") != "yes":
        failures.append("no probe ran while the sidecar was still draining: the refused check proves nothing")
    done = sum(sum(c.values()) for c in w["status"].values())
    rows = [("wrk responses", f"{done:,} in {w.get('duration_us', 0) / 1e6:.1f} s"),
            ]
    for token in ("valid", "expired", "forged", "unknown"):
        codes = w["status"].get(token)
        if codes or token != "unknown":
            rows.append((f"{token} token statuses", ", ".join(f"{c}: {n:,}" for c, n in sorted((codes or {}).items())) or "-"))
    drops = [float(e.rsplit("t=", 1)[1].rstrip(")")) - float(facts.get("term_unix", 0))
             for e in ka.get("events", []) if "written, connection closed" in e and "t=" in e]
    if drops:
        rows.append(("keep-alive drops after SIGTERM", f"+{min(drops):.2f} .. +{max(drops):.2f} s"))
    rows += [("wrk socket errors c/r/w/timeout", "/".join(str(errs.get(k, "?")) for k in ("connect", "read", "write", "timeout"))),
             ("keep-alive clients: responses", f"{ka.get('ok', 0):,} ({ka.get('close_header', 0)} said Connection: close)"),
             ("keep-alive clients: dropped", str(ka.get("dropped", "?"))),
             ("keep-alive: closed idle / refused", f"{ka.get('closed_idle', '?')} / {ka.get('refused', '?')}"),
             ("slow in-flight requests", " ".join(slow) or "-"),
             ("new conn +0.5 s after SIGTERM", facts.get("probe_1", "?")),
             ("new conn +1.5 s after SIGTERM", facts.get("probe_2", "?")),
             ("sidecar exit after SIGTERM", f"{exit_s:.2f} s (deadline {deadline:g} s)"),
             ("sidecar exit code", facts.get("exit_code", "?")),
             ("verdict", "PASS" if not failures else "FAIL")]
    print(table(rows))
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "soak":
        sys.exit(soak(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])))
    if mode == "shutdown":
        sys.exit(shutdown(sys.argv[2], sys.argv[3]))
    sys.exit(f"unknown mode {mode}")
