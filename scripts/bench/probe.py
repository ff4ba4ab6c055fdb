#!/usr/bin/env python3
"""Small measurement helpers for scripts/bench.sh. Standard library only.

Subcommands (every one is bounded in time):

  banner PORT TIMEOUT_S
      Connect to 127.0.0.1:PORT until a "220" greeting arrives; print the
      milliseconds it took. Exit 1 on timeout.

  sample OUTFILE PID [PID...]
      Until SIGTERM/SIGINT (or 1800 s), every 100 ms walk the process tree
      under the PIDs and record the peak of the summed VmRSS (tree and roots)
      and, every 500 ms, of the summed Pss (/proc/PID/smaps_rollup). On exit
      write one line to OUTFILE:
          peak_rss_tree_kb peak_rss_root_kb peak_pss_tree_kb cpu_s max_procs irq_share
      cpu_s is the utime+stime consumed by the tree while sampling, including
      children that were reaped by a tree member (their time moves into the
      parent's cutime/cstime, fields 16-17 of /proc/PID/stat). irq_share is
      the fraction of samples in which the first PID's main thread was on
      (or had last run on) CPU $BENCH_IRQ_CPU, the one that takes the disk's
      interrupts; -1 when that variable is unset.

  drain TIMEOUT_S SPEC [SPEC...]
      Wait until every SPEC is empty. SPEC is "tree:DIR" (no regular file
      anywhere under DIR), "spool:DIR" (no file in DIR but empty ones:
      Postern's queue/, where empty files are spares made ahead of need,
      no message), "prefix:DIR:PFX" (no entry of DIR whose name
      starts with PFX) or "count:DIR:N" (at least N entries in DIR: a Maildir
      folder that must hold every message). Polls every 20 ms without
      spawning anything. Exit 1 on timeout.

  drainat TIMEOUT_S SPEC [SPEC...]
      The same, and print the wall-clock time (Unix seconds) at which every
      SPEC was first seen satisfied: the end of an end-to-end measurement.

  startup OUTFILE PORT SETTLE_S CMD [ARG...]
      Launch CMD, connect to 127.0.0.1:PORT every 5 ms until a "220" greeting
      arrives, wait SETTLE_S, sample the idle memory of its process tree, then
      stop it (TERM, after 15 s KILL). Append one line to OUTFILE:
          ms_to_220 idle_rss_tree_kb idle_pss_tree_kb cpu_ms_to_220
      cpu_ms_to_220 is the CPU time the tree had used at the greeting, which
      a busy machine disturbs less than the wall-clock time ("fail" instead
      of the figures when no greeting came within 60 s).

  count FILE REGEX [REGEX...]
      Print, space separated, how many lines of FILE match each REGEX.

  waitcount TIMEOUT_S FILE REGEX TARGET
      Wait until at least TARGET lines of FILE match REGEX (logs written
      asynchronously, e.g. by postlogd, lag behind). Print the count; exit 1 if
      it is still short at the deadline.

  sinkcount FILE
      Print the last "mesg=N" counter smtp-sink -c wrote to FILE (0 if none).

  sinkwait TIMEOUT_S FILE TARGET
      Wait until smtp-sink -c's counter in FILE reaches TARGET. Print it; exit
      1 if it is still short at the deadline.

  edit FILE LINE
      Until killed (at most 1 h), every 100 ms rewrite FILE as "LINE" plus
      one new line, in place and by write-and-rename in turn: the policy
      reload row's editor, in one process, so that the edits themselves
      cost next to nothing (a shell loop would fork mv and sleep each time).

  nxdns PORT
      A DNS stub on 127.0.0.1:PORT (UDP) that answers NXDOMAIN to every query,
      so resolvers inside the bench's network namespace fail fast and locally.
      Runs until killed (at most 3 h).
"""

import os
import re
import signal
import socket
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def die(msg: str) -> None:
    sys.stderr.write(f"probe.py: {msg}\n")
    sys.exit(2)


# ----------------------------------------------------------------- banner
def cmd_banner(args: list[str]) -> int:
    port, timeout = int(args[0]), float(args[1])
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                data = s.recv(512)
                try:
                    s.sendall(b"QUIT\r\n")
                except OSError:
                    pass
                if data.startswith(b"220"):
                    print("%.1f" % ((time.monotonic() - start) * 1000))
                    return 0
        except OSError:
            pass
        time.sleep(0.02)
    return 1


# ----------------------------------------------------------------- sample
def stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses; everything after the last ")"
    # is space separated, starting with field 3 (state).
    return raw.rsplit(")", 1)[1].split()


def parent_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = stat_fields(int(name))
        if fields is None:
            continue
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def tree_of(roots: list[int]) -> list[int]:
    kids = parent_map()
    out: list[int] = []
    todo = list(roots)
    while todo and len(out) < 10000:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def status_kb(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int) -> float | None:
    """utime + stime + cutime + cstime of pid, in seconds."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    # fields[11..14] are stat fields 14..17: utime stime cutime cstime
    return sum(int(x) for x in fields[11:15]) / HZ


def cmd_sample(args: list[str]) -> int:
    out = args[0]
    roots = [int(x) for x in args[1:]]
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # CPU already used by each process when the window opened (0 for the
    # processes that appear later).
    baseline: dict[int, float] = {}
    for pid in tree_of(roots):
        c = cpu_seconds(pid)
        if c is not None:
            baseline[pid] = c

    peak_tree = peak_root = peak_pss = max_procs = 0
    tick = 0
    irq_cpu = os.environ.get("BENCH_IRQ_CPU", "")
    on_irq_cpu = placed = 0
    hard_stop = time.monotonic() + 1800
    while not stop and time.monotonic() < hard_stop:
        pids = tree_of(roots)
        for pid in pids:
            baseline.setdefault(pid, 0.0)
        max_procs = max(max_procs, len(pids))
        peak_tree = max(peak_tree, sum(status_kb(f"/proc/{p}/status", "VmRSS:") for p in pids))
        peak_root = max(peak_root, sum(status_kb(f"/proc/{p}/status", "VmRSS:") for p in roots))
        if irq_cpu:
            # Field 39 of /proc/PID/stat: the CPU the main thread is on, or last ran on.
            main = stat_fields(roots[0])
            if main is not None and len(main) > 36:
                placed += 1
                on_irq_cpu += main[36] == irq_cpu
        if tick % 5 == 0:
            pss = sum(status_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            peak_pss = max(peak_pss, pss)
        tick += 1
        time.sleep(0.1)

    # Live processes: their current total minus their baseline. A process
    # that has gone was reaped by its parent (in the tree), whose cutime and
    # cstime now include its whole lifetime; only what it had used before the
    # window must be taken off again.
    alive = {}
    for pid in tree_of(roots):
        c = cpu_seconds(pid)
        if c is not None:
            alive[pid] = c
    used = sum(c - baseline.get(pid, 0.0) for pid, c in alive.items())
    used -= sum(b for pid, b in baseline.items() if pid not in alive)
    with open(out, "w") as f:
        share = on_irq_cpu / placed if placed else -1.0
        f.write(f"{peak_tree} {peak_root} {peak_pss} {used:.3f} {max_procs} {share:.2f}\n")
    return 0


# ----------------------------------------------------------------- drain
def spec_pending(spec: str) -> int:
    kind, _, rest = spec.partition(":")
    if kind == "tree":
        n = 0
        for _, _, files in os.walk(rest):
            n += len(files)
        return n
    if kind == "spool":
        n = 0
        try:
            for entry in os.scandir(rest):
                try:
                    if entry.stat().st_size > 0:
                        n += 1
                except OSError:
                    pass  # delivered and removed meanwhile
        except OSError:
            return 0
        return n
    if kind == "count":
        path, _, want = rest.rpartition(":")
        try:
            have = len(os.listdir(path))
        except OSError:
            have = 0
        return max(0, int(want) - have)
    if kind == "prefix":
        path, _, prefix = rest.rpartition(":")
        try:
            return sum(1 for e in os.listdir(path) if e.startswith(prefix))
        except OSError:
            return 0
    die(f"bad drain spec {spec!r}")
    return 0


def cmd_drain(args: list[str], print_time: bool = False) -> int:
    deadline = time.monotonic() + float(args[0])
    specs = args[1:]
    while True:
        left = sum(spec_pending(s) for s in specs)
        if left == 0:
            if print_time:
                print("%.6f" % time.time())
            return 0
        if time.monotonic() >= deadline:
            sys.stderr.write(f"probe.py drain: {left} item(s) still queued in {specs}\n")
            return 1
        time.sleep(0.02)


def cmd_drainat(args: list[str]) -> int:
    return cmd_drain(args, True)


# ----------------------------------------------------------------- startup
def greeting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(5)
            data = s.recv(512)
            try:
                s.sendall(b"QUIT\r\n")
            except OSError:
                pass
            return data.startswith(b"220")
    except OSError:
        return False


def cmd_startup(args: list[str]) -> int:
    import subprocess

    out, port, settle, cmd = args[0], int(args[1]), float(args[2]), args[3:]
    with open(out + ".log", "ab") as log:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        ms = None
        cpu_ms = 0.0
        while time.monotonic() - start < 60 and proc.poll() is None:
            if greeting(port):
                ms = (time.monotonic() - start) * 1000
                cpu_ms = sum(cpu_seconds(p) or 0.0 for p in tree_of([proc.pid])) * 1000
                break
            time.sleep(0.005)
        rss = pss = 0
        if ms is not None:
            time.sleep(settle)
            pids = tree_of([proc.pid])
            rss = sum(status_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
            pss = sum(status_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    with open(out, "a") as f:
        f.write("fail\n" if ms is None else f"{ms:.1f} {rss} {pss} {cpu_ms:.0f}\n")
    return 0 if ms is not None else 1


# ----------------------------------------------------------------- count
def cmd_count(args: list[str]) -> int:
    pats = [re.compile(p) for p in args[1:]]
    counts = [0] * len(pats)
    try:
        with open(args[0], errors="replace") as f:
            for line in f:
                for i, p in enumerate(pats):
                    if p.search(line):
                        counts[i] += 1
    except OSError:
        pass
    print(" ".join(str(c) for c in counts))
    return 0


def cmd_waitcount(args: list[str]) -> int:
    deadline = time.monotonic() + float(args[0])
    path, pat, target = args[1], re.compile(args[2]), int(args[3])
    count, offset, partial = 0, 0, ""
    while True:
        try:
            with open(path, errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
        except OSError:
            chunk = ""
        lines = (partial + chunk).split("\n")
        partial = lines.pop()
        count += sum(1 for line in lines if pat.search(line))
        if count >= target:
            print(count)
            return 0
        if time.monotonic() >= deadline:
            print(count)
            return 1
        time.sleep(0.1)


# ----------------------------------------------------------------- smtp-sink
def sink_count(path: str) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 400))
            found = re.findall(rb"mesg=(\d+)", f.read())
        return int(found[-1]) if found else 0
    except OSError:
        return 0


def cmd_sinkcount(args: list[str]) -> int:
    print(sink_count(args[0]))
    return 0


def cmd_sinkwait(args: list[str]) -> int:
    deadline = time.monotonic() + float(args[0])
    target = int(args[2])
    while True:
        count = sink_count(args[1])
        if count >= target or time.monotonic() >= deadline:
            print(count)
            return 0 if count >= target else 1
        time.sleep(0.02)


# ----------------------------------------------------------------- edit
def cmd_edit(args: list[str]) -> int:
    path, line = args[0], args[1]
    hard_stop = time.monotonic() + 3600
    i = 0
    while time.monotonic() < hard_stop:
        i += 1
        text = f"{line}\nextra{i}\n"
        if i % 2 == 0:
            with open(path, "w") as f:
                f.write(text)
        else:
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.rename(path + ".tmp", path)
        time.sleep(0.1)
    return 0


# ----------------------------------------------------------------- nxdns
def cmd_nxdns(args: list[str]) -> int:
    port = int(args[0])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.settimeout(1.0)
    hard_stop = time.monotonic() + 3 * 3600
    while time.monotonic() < hard_stop:
        try:
            q, peer = s.recvfrom(4096)
        except socket.timeout:
            continue
        if len(q) < 12:
            continue
        # Header: same ID; QR=1, same opcode and RD, RA=1, RCODE=3 (NXDOMAIN);
        # echo the question section, no answers.
        flags = 0x8000 | (q[2] & 0x79) << 8 | 0x80 | 3
        qdcount = int.from_bytes(q[4:6], "big")
        end = 12
        for _ in range(qdcount):
            while end < len(q) and q[end] != 0:
                end += q[end] + 1
            end += 5
        reply = q[0:2] + flags.to_bytes(2, "big") + q[4:6] + b"\0\0\0\0\0\0" + q[12:end]
        try:
            s.sendto(reply, peer)
        except OSError:
            pass
    return 0


COMMANDS = {
    "banner": (cmd_banner, 2),
    "sample": (cmd_sample, 2),
    "drain": (cmd_drain, 2),
    "drainat": (cmd_drainat, 2),
    "startup": (cmd_startup, 4),
    "count": (cmd_count, 2),
    "waitcount": (cmd_waitcount, 4),
    "sinkcount": (cmd_sinkcount, 1),
    "sinkwait": (cmd_sinkwait, 3),
    "edit": (cmd_edit, 2),
    "nxdns": (cmd_nxdns, 1),
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die("usage: probe.py {" + "|".join(COMMANDS) + "} ARGS (see the docstring)")
    fn, nargs = COMMANDS[sys.argv[1]]
    if len(sys.argv) - 2 < nargs:
        die(f"{sys.argv[1]}: expected at least {nargs} argument(s)")
    sys.exit(fn(sys.argv[2:]))
