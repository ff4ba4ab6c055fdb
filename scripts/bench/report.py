#!/usr/bin/env python3
"""report.py RESULTS.csv -- print the intake table and the Postern/peer ratios.

Rows of the CSV are single runs (one per rep, cell and server). With more
than one rep, every figure is the median over reps and msgs/s also shows
[min-max]. Rows whose status is not OK are left out of medians and flagged.
Two rates per cell: intake (until the last 250) and end to end (until every
message is stored and the queue is empty). startup.csv beside RESULTS.csv,
when there, adds the start-up table; then the goals of issue 17 are checked
against the figures of this same run.
"""

import csv
import os
import statistics
import sys

CELLS = [("small", "1"), ("small", "20"), ("large", "20")]
SERVER_ORDER = ["postern-deno", "postern-bun", "postern-bin", "postfix-maildir", "postfix",
                "chasquid",
                "postern-deno+hook", "postern-bun+hook", "chasquid+hook",
                "postern-deno+spf", "postern-bun+spf", "postern-deno+reload",
                "postern-bun+reload", "postern-deno+admin", "postern-bun+admin",
                "postern-deno+limits", "postern-deno+cluster", "postern-bun+limits",
                "postern-bun+cluster", "postern-bin+limits", "postern-bin+cluster"]
PEERS = ["postfix-maildir", "postfix", "chasquid"]
# The peer that stores like Postern (virtual(8) into a Maildir, fsync before rename).
FAIR = "postfix-maildir"


def cell_name(size: str, conc: str) -> str:
    return f"{size} c={conc}"


def med(rows: list[dict], key: str) -> float | None:
    vals = [float(r[key]) for r in rows if r[key] not in ("", "NA")]
    return statistics.median(vals) if vals else None


def fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def main() -> int:
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print("(no results)")
        return 1
    servers = [s for s in SERVER_ORDER if any(r["server"] == s for r in rows)]
    servers += sorted({r["server"] for r in rows} - set(servers))
    reps = len({r["rep"] for r in rows})

    head = ["cell", "server", "n", "intake msgs/s", "e2e msgs/s", "CPU ms/msg", "peak RSS MB",
            "peak PSS MB", "procs", "status"]
    table = [head]
    rate: dict[tuple[str, str], float | None] = {}
    e2e: dict[tuple[str, str], float | None] = {}
    cpu: dict[tuple[str, str], float | None] = {}
    pss: dict[tuple[str, str], float | None] = {}
    for size, conc in CELLS:
        for s in servers:
            runs = [r for r in rows if r["server"] == s and r["size"] == size and r["conc"] == conc]
            if not runs:
                continue
            good = [r for r in runs if r["status"] == "OK"]
            bad = len(runs) - len(good)
            m = med(good, "msgs_per_s")
            rate[(cell_name(size, conc), s)] = m
            e2e[(cell_name(size, conc), s)] = med(good, "e2e_msgs_per_s")
            cpu[(cell_name(size, conc), s)] = med(good, "cpu_ms_per_msg")
            pss[(cell_name(size, conc), s)] = med(good, "peak_pss_tree_mb")
            mps = with_range(m, good, "msgs_per_s", reps)
            e2e_mps = with_range(e2e[(cell_name(size, conc), s)], good, "e2e_msgs_per_s", reps)
            status = "OK" if bad == 0 else f"FAIL x{bad}: " + ",".join(
                sorted({r["status"] for r in runs if r["status"] != "OK"}))
            table.append([
                cell_name(size, conc), s, runs[0]["n"], mps, e2e_mps,
                fmt(med(good, "cpu_ms_per_msg"), 2),
                fmt(med(good, "peak_rss_tree_mb")), fmt(med(good, "peak_pss_tree_mb")),
                fmt(med(good, "max_procs"), 0), status,
            ])
    print_table(table)
    print("  (e2e: until every message is in the Maildir and the queue is empty; for postfix "
          "(discard) and chasquid (MDA /bin/true), until their queue is empty)")
    loads = [float(r["loadavg1"]) for r in rows if r.get("loadavg1") not in (None, "")]
    if loads:
        print(f"  load average (1 min) at the start of the cells: {min(loads):.2f}-{max(loads):.2f} "
              f"on {os.cpu_count()} CPUs (above the CPU count, other work competed for them)")

    for suffix, title, label in VARIANTS:
        variants = [s for s in servers if s.endswith(suffix)]
        if variants:
            print()
            print_variants(rows, rate, variants, suffix, title, label)

    clustered = [s for s in servers if s.endswith("+cluster")]
    if clustered:
        print()
        print_cluster(rows, clustered, os.path.join(os.path.dirname(sys.argv[1]),
                                                    "cluster_calls.csv"))

    posterns = [s for s in servers if s.startswith("postern") and "+" not in s]
    peers = [p for p in PEERS if p in servers]
    if posterns and peers:
        print()
        print("Ratios Postern/peer (msgs/s: >1 means Postern is faster; "
              "CPU ms/msg: <1 means Postern uses less CPU per message); the servers of a cell run "
              "back to back in each rep, and 'per rep' is the median of those reps' ratios")
        head = ["cell", "postern"]
        if FAIR in peers:
            head += [f"e2e vs {FAIR}", "e2e per rep (median)", f"CPU/msg vs {FAIR}",
                     "CPU per rep (median)", "main thread on the disk-IRQ CPU, per rep"]
        for q in peers:
            head.append(f"intake vs {q}")
        table = [head]
        for size, conc in CELLS:
            c = cell_name(size, conc)
            for p in posterns:
                line = [c, p]
                if FAIR in peers:
                    line.append(ratio(e2e.get((c, p)), e2e.get((c, FAIR))))
                    line.append(per_rep(peer_ratios(rows, size, conc, p, FAIR, "e2e_msgs_per_s")))
                    line.append(ratio(cpu.get((c, p)), cpu.get((c, FAIR))))
                    line.append(per_rep(peer_ratios(rows, size, conc, p, FAIR, "cpu_ms_per_msg")))
                    line.append(irq_shares(rows, size, conc, p, FAIR))
                for q in peers:
                    line.append(ratio(rate.get((c, p)), rate.get((c, q))))
                table.append(line)
        print_table(table)

    startup = read_startup(os.path.join(os.path.dirname(sys.argv[1]) or ".", "startup.csv"))
    if startup:
        print()
        print("Start-up: launch until the first 220 greeting (wall clock, and the CPU time used by "
              "then, which a busy machine disturbs less); idle memory 3 s later (medians of the "
              "starts after a first, unrecorded one)")
        table = [["server", "starts", "ms to 220", "CPU ms to 220", "idle RSS MB", "idle PSS MB"]]
        for s, (n, ms, rss, pss_kb, cpu_ms) in startup.items():
            table.append([s, str(n), fmt(ms, 0), fmt(cpu_ms, 0), fmt(rss / 1024),
                          fmt(pss_kb / 1024)])
        print_table(table)

    print()
    print("Goals of issue 17 (figures of this run; e2e ratios against postfix-maildir)")
    table = [["goal", "figure", "met"]]
    for name, got, want, higher in goals(rows, servers, rate, e2e, cpu, pss, startup):
        ok = "-" if got is None else ("yes" if (got >= want if higher else got <= want) else "NO")
        table.append([name, "-" if got is None else f"{got:.2f}", ok])
    print_table(table)
    return 0 if all(r["status"] == "OK" for r in rows) else 1


def with_range(m: float | None, good: list[dict], key: str, reps: int) -> str:
    text = fmt(m, 0)
    vals = [float(r[key]) for r in good if r.get(key) not in (None, "", "NA")]
    if reps > 1 and vals:
        text += f" [{min(vals):.0f}-{max(vals):.0f}]"
    return text


def read_startup(path: str) -> dict[str, tuple[int, float, float, float, float | None]]:
    """server -> (starts, median ms, median idle RSS kB, median idle PSS kB, median CPU ms)."""
    per: dict[str, list[list[float]]] = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) in (4, 5):
                    per.setdefault(parts[0], []).append([float(x) for x in parts[1:]])
    except OSError:
        return {}
    out = {}
    for s, v in per.items():
        cpus = [x[3] for x in v if len(x) > 3]
        out[s] = (len(v), statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
                  statistics.median(x[2] for x in v), statistics.median(cpus) if cpus else None)
    return out


def goals(rows: list[dict], servers: list[str], rate: dict, e2e: dict, cpu: dict, pss: dict,
          startup: dict) -> list[tuple]:
    def r(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    def paired(size: str, conc: str, p: str, key: str) -> float | None:
        ratios = peer_ratios(rows, size, conc, p, FAIR, key)
        return statistics.median(ratios) if ratios else None

    s20 = "small c=20"
    out = [
        ("binary e2e small c=20 >= x1.5 (median per rep)",
         paired("small", "20", "postern-bin", "e2e_msgs_per_s"), 1.5, True),
        ("binary e2e small c=1 >= x1.2 (median per rep)",
         paired("small", "1", "postern-bin", "e2e_msgs_per_s"), 1.2, True),
        ("binary e2e 100 KB c=20 >= x1.2 (median per rep)",
         paired("large", "20", "postern-bin", "e2e_msgs_per_s"), 1.2, True),
        ("deno e2e small c=20 >= x1.0 (median per rep)",
         paired("small", "20", "postern-deno", "e2e_msgs_per_s"), 1.0, True),
        ("deno e2e small c=1 >= x0.8 (median per rep)",
         paired("small", "1", "postern-deno", "e2e_msgs_per_s"), 0.8, True),
    ]
    for p in ("postern-deno", "postern-bun", "postern-bin"):
        for conc in ("1", "20"):
            out.append((f"{p} CPU ms/msg small c={conc} <= postfix-maildir (median per rep)",
                        paired("small", conc, p, "cpu_ms_per_msg"), 1.0, False))
    for h in (s for s in servers if s.startswith("postern") and s.endswith("+hook")):
        ratios = paired_ratios(rows, h, h[: -len("+hook")])
        out.append((f"{h[:-len('+hook')]} with a post-data hook >= x0.9 (median per rep)",
                    statistics.median(ratios) if ratios else None, 0.9, True))
    out.append(("binary peak PSS small c=20 <= postfix-maildir (ratio)",
                r(pss.get((s20, "postern-bin")), pss.get((s20, FAIR))), 1.0, False))
    if "postern-bin" in startup:
        _, ms, rss, _, _ = startup["postern-bin"]
        out.append(("binary launch -> 220, ms <= 150", ms, 150, False))
        out.append(("binary idle RSS, MB <= 50", rss / 1024, 50, False))
    return out


def print_cluster(rows: list[dict], clustered: list[str], calls_csv: str) -> None:
    """The cost of `cluster` (issue 20): each +cluster server against the same
    runtime and limits counting locally (+limits), pair by pair within a rep."""
    print("Cluster (issue 20), small c=20: msgs/s with `cluster` set (rate limits counted in a "
          "redis-server on 127.0.0.1) as a ratio to the same node and limits counted in the node "
          "(goal: >= 0.90); per rep, then the median of the per-rep ratios")
    calls: dict[str, list[tuple[int, int]]] = {}
    if os.path.exists(calls_csv):
        with open(calls_csv, newline="") as f:
            for rep, server, n, k in csv.reader(f):
                calls.setdefault(server, []).append((int(n), int(k)))
    table = [["server", "msgs/s local (median)", "msgs/s cluster (median)", "ratio per rep",
              "median ratio", "script calls/msg"]]
    for h in clustered:
        base = h[: -len("+cluster")] + "+limits"
        with_c, without = small20_by_rep(rows, h), small20_by_rep(rows, base)
        ratios = paired_ratios(rows, h, base)
        per_msg = "-"
        if calls.get(h):
            per_msg = "/".join(f"{k / n:.2f}" for n, k in calls[h])
        table.append([
            h, fmt(statistics.median(without.values()) if without else None, 0),
            fmt(statistics.median(with_c.values()) if with_c else None, 0),
            " ".join(f"x{x:.2f}" for x in ratios) or "-",
            f"x{statistics.median(ratios):.2f}" if ratios else "-", per_msg,
        ])
    print_table(table)
    print("  (script calls/msg: EVALSHA calls in redis-server per message of each +cluster cell; "
          "2.00 is one check per connection and one per message, all shared)")


# Rows measured against the same server without the variant: suffix, title, column label.
VARIANTS = [
    ("+hook", "Trivial post-data hook, small c=20: msgs/s with the hook as a ratio to the same server "
     "without (Postern: TypeScript module hook in a sandboxed deno worker; chasquid: shell "
     "script run per message; goal for Postern: >= 0.90)", "with hook"),
    ("+spf", "SPF on, small c=20: msgs/s with SPF at MAIL FROM (warm cache, loopback DNS) and "
     "DKIM/DMARC after DATA, as a ratio to the same server without (goal: >= 0.90)", "with SPF"),
    ("+reload", "Policy reloaded every 100 ms, small c=20: msgs/s while a users file is rewritten "
     "(in place and by rename, in turn) every 100 ms, as a ratio to the same server "
     "without (goal: >= 0.95)", "reloading"),
    ("+admin", "Admin API polled, small c=20: msgs/s while /metrics and /status are each fetched 10 "
     "times a second, as a ratio to the same server without (goal: >= 0.97)", "polled"),
]


def by_rep(rows: list[dict], server: str, size: str, conc: str, key: str) -> dict[str, float]:
    """rep -> the figure `key` of the server's cell (OK runs only)."""
    return {r["rep"]: float(r[key]) for r in rows
            if r["server"] == server and r["size"] == size and r["conc"] == conc
            and r["status"] == "OK" and r.get(key) not in (None, "", "NA")}


def peer_ratios(rows: list[dict], size: str, conc: str, server: str, peer: str,
                key: str) -> list[float]:
    """The server's figure over the peer's in the same cell, rep by rep (bench.sh
    runs the servers of a cell back to back in each rep)."""
    mine, theirs = by_rep(rows, server, size, conc, key), by_rep(rows, peer, size, conc, key)
    reps = sorted(set(mine) & set(theirs), key=int)
    return [mine[r] / theirs[r] for r in reps if theirs[r] > 0]


def irq_shares(rows: list[dict], size: str, conc: str, server: str, peer: str) -> str:
    """The share of the cell that the server's main thread spent on the CPU
    taking the disk's interrupts, rep by rep in the order of peer_ratios
    ("-" when the bench could not tell: an older CSV, or no such CPU)."""
    mine = by_rep(rows, server, size, conc, "main_on_irq_cpu")
    reps = sorted(set(mine) & set(by_rep(rows, peer, size, conc, "e2e_msgs_per_s")), key=int)
    shares = [mine[r] for r in reps if mine[r] >= 0]
    return " ".join(f"{x * 100:.0f}%" for x in shares) if shares else "-"


def per_rep(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    return " ".join(f"x{x:.2f}" for x in ratios) + f" (x{statistics.median(ratios):.2f})"


def small20_by_rep(rows: list[dict], server: str) -> dict[str, float]:
    """rep -> intake msgs/s of the server's small c=20 cell (OK runs only)."""
    return {r["rep"]: float(r["msgs_per_s"]) for r in rows
            if r["server"] == server and r["size"] == "small" and r["conc"] == "20"
            and r["status"] == "OK"}


def paired_ratios(rows: list[dict], variant: str, base: str) -> list[float]:
    """The variant's small c=20 rate over its base's, rep by rep. bench.sh runs
    the two back to back in each rep, so a pair shares the machine's state of
    those seconds; the rates of one server move by tens of percent between
    reps on a shared VM, which a ratio of two medians carries into the ratio."""
    with_v, without = small20_by_rep(rows, variant), small20_by_rep(rows, base)
    reps = sorted(set(with_v) & set(without), key=int)
    return [with_v[r] / without[r] for r in reps if without[r] > 0]


def print_variants(rows: list[dict], rate: dict, variants: list[str], suffix: str, title: str,
                   label: str) -> None:
    print(title + "; per rep (the two cells run back to back), then the median of those ratios")
    table = [["server", "msgs/s without", f"msgs/s {label}", "ratio of medians", "ratio per rep",
              "median ratio"]]
    c = cell_name("small", "20")
    for h in variants:
        base = h[: -len(suffix)]
        ratios = paired_ratios(rows, h, base)
        table.append([h, fmt(rate.get((c, base)), 0), fmt(rate.get((c, h)), 0),
                      ratio(rate.get((c, h)), rate.get((c, base))),
                      " ".join(f"x{x:.2f}" for x in ratios) or "-",
                      f"x{statistics.median(ratios):.2f}" if ratios else "-"])
    print_table(table)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"x{a / b:.2f}"


def print_table(table: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for j, row in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) if i < 2 or j == 0 else cell.rjust(widths[i])
                        for i, cell in enumerate(row)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main())
