#!/usr/bin/env python3
"""report.py RESULTS.csv -- print the intake table and the Postern/peer ratios.

Rows of the CSV are single runs (one per rep, cell and server). With more
than one rep, every figure is the median over reps and msgs/s also shows
[min-max]. Rows whose status is not OK are left out of medians and flagged.
"""

import csv
import statistics
import sys

CELLS = [("small", "1"), ("small", "20"), ("large", "20")]
SERVER_ORDER = ["postern-deno", "postern-bun", "postfix", "chasquid",
                "postern-deno+hook", "postern-bun+hook", "chasquid+hook",
                "postern-deno+spf", "postern-bun+spf", "postern-deno+reload",
                "postern-bun+reload", "postern-deno+admin", "postern-bun+admin"]
PEERS = ["postfix", "chasquid"]


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

    head = ["cell", "server", "n", "msgs/s", "CPU ms/msg", "peak RSS MB", "peak PSS MB",
            "procs", "status"]
    table = [head]
    rate: dict[tuple[str, str], float | None] = {}
    cpu: dict[tuple[str, str], float | None] = {}
    for size, conc in CELLS:
        for s in servers:
            runs = [r for r in rows if r["server"] == s and r["size"] == size and r["conc"] == conc]
            if not runs:
                continue
            good = [r for r in runs if r["status"] == "OK"]
            bad = len(runs) - len(good)
            m = med(good, "msgs_per_s")
            rate[(cell_name(size, conc), s)] = m
            cpu[(cell_name(size, conc), s)] = med(good, "cpu_ms_per_msg")
            mps = fmt(m, 0)
            if reps > 1 and good:
                lo = min(float(r["msgs_per_s"]) for r in good)
                hi = max(float(r["msgs_per_s"]) for r in good)
                mps += f" [{lo:.0f}-{hi:.0f}]"
            status = "OK" if bad == 0 else f"FAIL x{bad}: " + ",".join(
                sorted({r["status"] for r in runs if r["status"] != "OK"}))
            table.append([
                cell_name(size, conc), s, runs[0]["n"], mps,
                fmt(med(good, "cpu_ms_per_msg"), 2),
                fmt(med(good, "peak_rss_tree_mb")), fmt(med(good, "peak_pss_tree_mb")),
                fmt(med(good, "max_procs"), 0), status,
            ])
    print_table(table)

    hooked = [s for s in servers if s.endswith("+hook")]
    if hooked:
        print()
        print("Trivial post-data hook, small c=20: msgs/s with the hook as a ratio to the same server "
              "without (Postern: TypeScript module hook in a sandboxed deno worker; chasquid: shell "
              "script run per message)")
        table = [["server", "msgs/s without", "msgs/s with hook", "ratio"]]
        c = cell_name("small", "20")
        for h in hooked:
            base = h[: -len("+hook")]
            table.append([h, fmt(rate.get((c, base)), 0), fmt(rate.get((c, h)), 0),
                          ratio(rate.get((c, h)), rate.get((c, base)))])
        print_table(table)

    with_spf = [s for s in servers if s.endswith("+spf")]
    if with_spf:
        print()
        print("SPF on, small c=20: msgs/s with SPF at MAIL FROM (warm cache, loopback DNS) and "
              "DKIM/DMARC after DATA, as a ratio to the same server without (goal: >= 0.90)")
        table = [["server", "msgs/s without", "msgs/s with SPF", "ratio"]]
        c = cell_name("small", "20")
        for h in with_spf:
            base = h[: -len("+spf")]
            table.append([h, fmt(rate.get((c, base)), 0), fmt(rate.get((c, h)), 0),
                          ratio(rate.get((c, h)), rate.get((c, base)))])
        print_table(table)

    reloading = [s for s in servers if s.endswith("+reload")]
    if reloading:
        print()
        print("Policy reloaded every 100 ms, small c=20: msgs/s while a users file is rewritten "
              "(in place and by rename, in turn) every 100 ms, as a ratio to the same server "
              "without (goal: >= 0.95)")
        table = [["server", "msgs/s without", "msgs/s reloading", "ratio"]]
        c = cell_name("small", "20")
        for h in reloading:
            base = h[: -len("+reload")]
            table.append([h, fmt(rate.get((c, base)), 0), fmt(rate.get((c, h)), 0),
                          ratio(rate.get((c, h)), rate.get((c, base)))])
        print_table(table)

    polled = [s for s in servers if s.endswith("+admin")]
    if polled:
        print()
        print("Admin API polled, small c=20: msgs/s while /metrics and /status are each fetched 10 "
              "times a second, as a ratio to the same server without (goal: >= 0.97)")
        table = [["server", "msgs/s without", "msgs/s polled", "ratio"]]
        c = cell_name("small", "20")
        for h in polled:
            base = h[: -len("+admin")]
            table.append([h, fmt(rate.get((c, base)), 0), fmt(rate.get((c, h)), 0),
                          ratio(rate.get((c, h)), rate.get((c, base)))])
        print_table(table)

    posterns = [s for s in servers if s.startswith("postern") and "+" not in s]
    peers = [p for p in PEERS if p in servers]
    if posterns and peers:
        print()
        print("Ratios Postern/peer (msgs/s: >1 means Postern is faster; "
              "CPU ms/msg: <1 means Postern uses less CPU per message)")
        head = ["cell", "postern"]
        for q in peers:
            head += [f"msgs/s vs {q}", f"CPU/msg vs {q}"]
        table = [head]
        for size, conc in CELLS:
            c = cell_name(size, conc)
            for p in posterns:
                line = [c, p]
                for q in peers:
                    line.append(ratio(rate.get((c, p)), rate.get((c, q))))
                    line.append(ratio(cpu.get((c, p)), cpu.get((c, q))))
                table.append(line)
        print_table(table)
    return 0 if all(r["status"] == "OK" for r in rows) else 1


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
