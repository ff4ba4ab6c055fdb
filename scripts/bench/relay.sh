# scripts/bench/relay.sh -- sourced by scripts/bench.sh (RELAY=1): outbound
# delivery throughput. 5000 small messages (smtp-source -s 20) are injected
# and timed until smtp-sink -c has counted every one and the queue is empty:
#   postfix                relay_domains relay.test -> relaysink:[127.0.0.1]:SINK
#   postern-*+relay        alias fwd@example.test: sink@relay.test, MX lookup on
#                          a loopback DNS server, outbound.port SINK
#   postern-*+relayhook    the same with a trivial pre-delivery-attempt hook
# Ratios: Postern / Postfix, and hook / no hook (goal >= 0.9). The hook's
# calls/s from the queue's side come from hook_latency.ts.
# Uses bench.sh's helpers (log, probe, start_postern, stop_pid, PIDS, RT, ...).

RELAY_CSV=$BENCH_OUT/relay.csv
RELAY_N=${N_RELAY:-5000}
P_SINK=$((PORT_BASE+21))

relay_setup() {
  local f=$RT/postern/relay_dns.addr c=$RT/postern/config
  (cd "$REPO" && exec deno run -A scripts/bench/relay_dns.ts "$f") >> "$RT/relay_dns.log" 2>&1 &
  PIDS+=($!)
  local i; for i in $(seq 100); do [ -s "$f" ] && break; sleep 0.1; done
  [ -s "$f" ] || fail "the relay bench DNS server did not start: $(tail -3 "$RT/relay_dns.log")"
  smtp-sink -c -u nobody "127.0.0.1:$P_SINK" 256 > "$RT/sink.log" 2>&1 < /dev/null &
  PIDS+=($!)
  probe banner "$P_SINK" 30 > /dev/null || fail "smtp-sink did not start on $P_SINK"
  local v
  for v in relay relayhook; do
    cp -r "$c" "$RT/postern/config-$v"
    echo "fwd: sink@relay.test" > "$RT/postern/config-$v/domains/example.test/aliases"
    {
      cat "$c/postern.yaml"
      echo "dns:"
      echo "  servers: [\"$(cat "$f")\"]"
      echo "outbound:"
      echo "  port: $P_SINK"
    } > "$RT/postern/config-$v/postern.yaml"
  done
  mkdir -p "$RT/postern/config-relayhook/hooks"
  echo 'export default () => ({ action: "normal" });' \
    > "$RT/postern/config-relayhook/hooks/pre-delivery-attempt.ts"
  postconf -c "$PFC" -e "relay_domains = example.test, relay.test" \
    "transport_maps = inline:{ example.test=discard:, relay.test=relaysink:[127.0.0.1]:$P_SINK }"
  echo "relaysink  unix  -       -      n      -      -       smtp" >> "$PFC/master.cf"
  postfix -c "$PFC" reload >> "$LOG" 2>&1 || fail "postfix reload for the relay row failed"
  PORT[postern-deno+relay]=$((PORT_BASE+17)); PORT[postern-bun+relay]=$((PORT_BASE+18))
  PORT[postern-deno+relayhook]=$((PORT_BASE+19)); PORT[postern-bun+relayhook]=$((PORT_BASE+20))
  RELAY_SERVERS=(postfix postern-deno+relay postern-deno+relayhook)
  [ "$BUN" = 1 ] && RELAY_SERVERS+=(postern-bun+relay postern-bun+relayhook)
  start_postern deno relay
  start_postern deno relayhook
  if [ "$BUN" = 1 ]; then start_postern bun relay; start_postern bun relayhook; fi
  echo "rep,server,n,inject_s,total_s,msgs_per_s,delivered,cpu_ms_per_msg,peak_rss_tree_mb,sessions,status" \
    > "$RELAY_CSV"
  log "relay row: smtp-sink on $P_SINK, DNS at $(cat "$f")"
}

relay_cell() {  # rep server
  local rep=$1 s=$2 rcpt=fwd@example.test
  [ "$s" = postfix ] && rcpt=x@relay.test
  ensure_running "$s"
  quiesce
  local before; before=$(probe sinkcount "$RT/sink.log")
  local sess0; sess0=$(grep -ao 'sess=[0-9]*' "$RT/sink.log" | tail -1 | cut -d= -f2)
  local cell=$RT/cell; mkdir -p "$cell"
  python3 "$B/probe.py" sample "$cell/sample" "${ROOTPID[$s]}" & SAMPLER=$!
  sleep 0.3
  local cmd=(smtp-source -s 20 -m "$RELAY_N" -f "$FROM" -t "$rcpt" "127.0.0.1:${PORT[$s]}")
  echo "${cmd[*]}   # then until smtp-sink counted them all and the queue is empty" \
    >> "$BENCH_OUT/commands.txt"
  local t0 t1 t2 rc st=OK
  t0=$(now)
  timeout "$SRC_TIMEOUT" "${cmd[@]}" > "$cell/src.out" 2> "$cell/src.err" & LOADPID=$!
  wait "$LOADPID"; rc=$?; LOADPID=
  t1=$(now)
  probe sinkwait "$DRAIN_TIMEOUT" "$RT/sink.log" $((before + RELAY_N)) > /dev/null || st=not_all_delivered
  # shellcheck disable=SC2046
  probe drain "$DRAIN_TIMEOUT" $(queue_specs "$s") || st="$st;queue_not_drained"
  t2=$(now)
  kill -TERM "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; SAMPLER=
  local after; after=$(probe sinkcount "$RT/sink.log")
  local sess1; sess1=$(grep -ao 'sess=[0-9]*' "$RT/sink.log" | tail -1 | cut -d= -f2)
  local pk pkm pss cpu procs
  read -r pk pkm pss cpu procs < "$cell/sample" || { pk=0 cpu=0; }
  [ "$rc" = 0 ] || st="$st;rc=$rc"
  [ -s "$cell/src.err" ] && st="$st;src_errors"
  st=${st#OK;}
  local row
  row=$(python3 -c "
n, t0, t1, t2, cpu = $RELAY_N, $t0, $t1, $t2, $cpu
print('%s,%s,%d,%.3f,%.3f,%.1f,%d,%.3f,%.1f,%d' % ('$rep', '$s', n, t1 - t0, t2 - t0, n / (t2 - t0),
      $after - $before, cpu * 1000 / n, $pk / 1024, ${sess1:-0} - ${sess0:-0}))")
  echo "$row,$st" >> "$RELAY_CSV"
  log "relay rep$rep $s: $row $st"
}

relay_run() {
  local rep s
  for rep in $(seq "$REPS"); do
    for s in $(printf '%s\n' "${RELAY_SERVERS[@]}" | shuf); do relay_cell "$rep" "$s"; done
  done
}

relay_report() {
  python3 - "$RELAY_CSV" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["status"] == "OK"]
by = {}
for r in rows:
    by.setdefault(r["server"], []).append(r)
med = lambda s, k: statistics.median(float(r[k]) for r in by[s]) if s in by else None
print("  %-24s %10s %10s %10s %12s %9s" % ("server", "msgs/s", "inject s", "total s", "CPU ms/msg", "sessions"))
for s in by:
    print("  %-24s %10.1f %10.2f %10.2f %12.2f %9d" % (s, med(s, "msgs_per_s"), med(s, "inject_s"),
          med(s, "total_s"), med(s, "cpu_ms_per_msg"), med(s, "sessions")))
pf = med("postfix", "msgs_per_s")
for rt in ("deno", "bun"):
    plain, hook = med(f"postern-{rt}+relay", "msgs_per_s"), med(f"postern-{rt}+relayhook", "msgs_per_s")
    if plain and pf:
        print(f"  Postern on {rt} vs Postfix, injection to empty queue: x{plain / pf:.2f}")
    if plain and hook:
        print(f"  Postern on {rt} with a trivial pre-delivery-attempt hook vs without: x{hook / plain:.2f} (goal >= 0.9)")
bad = sum(1 for r in csv.DictReader(open(sys.argv[1])) if r["status"] != "OK")
if bad:
    print(f"  {bad} row(s) not OK: see {sys.argv[1]}")
PY
}
