#!/usr/bin/env bash
# scripts/bench.sh -- `deno task bench`: SMTP intake throughput of Postern next
# to Postfix and chasquid (Debian packages), on the same machine, in one run.
#
# For every cell (5000 small messages at concurrency 1 and 20, 1000 messages
# of 100 KB at concurrency 20) and every server, smtp-source sends the load to
# 127.0.0.1 and the bench records msgs/s, CPU ms per message (server process
# tree, run + queue drain) and peak RSS/PSS, then prints a table with the
# Postern/peer ratios. Raw rows go to $BENCH_OUT/intake.csv.
#
# Two rates per cell: intake (first connection until smtp-source has its last
# 250) and end to end (first connection until every message is stored and the
# queue is empty). The fair peer for the end-to-end rate is postfix-maildir:
# a second private Postfix whose virtual(8) delivers into a Maildir as Postern
# does (fsync before the rename into new/). Postfix with the discard transport
# and chasquid (MDA /bin/true) stay as references; for them "end to end" is
# until their queue is empty. Postern runs on Deno, on Bun and as the compiled
# binary (dist/postern; built with scripts/build.sh when missing). Before the
# load, every Postern and chasquid is started 3 times to measure launch to
# first 220 and idle memory (startup.csv).
#
# Needs root (the private Postfix instance, the network namespace, apt-get).
# Missing postfix/chasquid/openssl are installed with apt-get ("Local only",
# services not started). The system's Postfix and chasquid are never started:
# Postfix runs as a private instance (`postfix -c $RT/postfix/etc start`),
# chasquid with its own config dir, both under a temp dir, on loopback ports.
# When `unshare` works, everything runs in a private network + mount namespace
# (only `lo`; DNS goes to a local NXDOMAIN stub), so nothing can leave the
# machine. Everything started is stopped by PID at the end, also on error.
#
# Environment (all optional):
#   QUICK=1                             quick mode (a few minutes): N_SMALL=500 N_LARGE=100, only
#                                       the peer table and the start-up row (the variant rows
#                                       below default to 0; set them to 1 to add them)
#   N_SMALL=5000 N_LARGE=1000 REPS=1    load size and repeats (medians if REPS>1)
#   BUN=auto|1|0                        also measure Postern on Bun (auto: if installed)
#   BIN=auto|1|0                        also measure the compiled binary dist/postern (auto: if it
#                                       is there or scripts/build.sh can build it)
#   STARTUP=1                           launch -> first 220 and idle RSS/PSS, 3 starts per server
#   BENCH_PORT_BASE=2625                first of 31 loopback ports
#   BENCH_OUT=DIR                       results dir (default /tmp/postern-bench-results/<UTC stamp>)
#   BENCH_NETNS=auto|0                  0: stay in the host network namespace (loopback still)
#   POSTERN_MAX_PER_IP=100              smtp.max_connections_per_ip for Postern ("default": leave unset)
#   SRC_TIMEOUT=300 DRAIN_TIMEOUT=120   per smtp-source run / per queue drain, seconds
#   WARMUP=15000                        small messages at c=20 each server takes first, not recorded
#                                       (0: none; QUICK=1: 2*N_SMALL); see warm_up below
#   BENCH_MAX_S=900                     cells not started by then (counted from the end of the
#                                       warm-up) are skipped
#   HOOKS=1                             also measure intake with a trivial post-data hook (small c=20):
#                                       Postern with a TypeScript module hook, chasquid with a shell
#                                       hook, as ratios to the same server without; plus the module
#                                       hook's call latency and calls/s per worker
#   SPF=1                               also measure intake with SPF on (small c=20): the sender's
#                                       record served by a loopback DNS server, warm cache, DKIM/DMARC
#                                       checks after DATA too, as a ratio to the same server without
#   RELOAD=1                            also measure the policy reload (issue: hot reload): latency from a
#                                       save to the first SMTP transaction that sees it (50 edits of
#                                       each kind of write), and intake (small c=20) while a users file
#                                       is rewritten every 100 ms, as a ratio to the same server without
#   ADMIN=1                             also measure intake (small c=20) while /metrics and /status of the
#                                       admin API are each polled 10 times a second, as a ratio to the
#                                       same server without
#   RELAY=1                             also measure outbound delivery (scripts/bench/relay.sh): 5000
#                                       small messages relayed to smtp-sink, injection until the queue is
#                                       empty, beside Postfix relaying the same; with and without a trivial
#                                       pre-delivery-attempt hook; and that hook's calls/s (hook_latency.ts)
#   N_RELAY=5000                        messages of the relay row
#   CLUSTER=1                           also measure intake (small c=20) with `cluster` set (issue 20): a
#                                       redis-server started by the bench on 127.0.0.1 (no persistence;
#                                       installed from Debian when missing), loopback not trusted so that
#                                       every connection and message is one rate-limit script call, as a
#                                       ratio to the same node and limits without `cluster` (goal: >= 0.90);
#                                       on in QUICK=1 mode too (CLUSTER=0 leaves it out)
#   CLUSTER_TIMEOUT=1s                  cluster.timeout of that row (the default 50ms is sometimes missed on
#                                       a saturated machine, and the node then counts locally)
#   BENCH_CELLS="small:1 small:20 large:20"  the cells of the peer table (variants use small:20)
#   KEEP_TMP=1                          keep the temp dir (server logs, spools)
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=$REPO/scripts/bench
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then DEF_SMALL=500 DEF_LARGE=100 DEF_ROWS=0; else DEF_SMALL=5000 DEF_LARGE=1000 DEF_ROWS=1; fi
N_SMALL=${N_SMALL:-$DEF_SMALL}
N_LARGE=${N_LARGE:-$DEF_LARGE}
REPS=${REPS:-1}
LARGE_BYTES=102400
BUN=${BUN:-auto}
BIN=${BIN:-auto}
STARTUP=${STARTUP:-1}
HOOKS=${HOOKS:-$DEF_ROWS}
SPF=${SPF:-$DEF_ROWS}
RELOAD=${RELOAD:-$DEF_ROWS}
ADMIN=${ADMIN:-$DEF_ROWS}
RELAY=${RELAY:-$DEF_ROWS}
CLUSTER=${CLUSTER:-1}
PORT_BASE=${BENCH_PORT_BASE:-2625}
BENCH_NETNS=${BENCH_NETNS:-auto}
POSTERN_MAX_PER_IP=${POSTERN_MAX_PER_IP:-100}
SRC_TIMEOUT=${SRC_TIMEOUT:-300}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-120}
BENCH_MAX_S=${BENCH_MAX_S:-900}
if [ "$QUICK" = 1 ]; then DEF_WARMUP=$((2 * N_SMALL)); else DEF_WARMUP=15000; fi
WARMUP=${WARMUP:-$DEF_WARMUP}
FROM=sender@client.test
RCPT=user@example.test

die() { echo "bench: $*" >&2; exit 1; }
for v in N_SMALL N_LARGE REPS PORT_BASE SRC_TIMEOUT DRAIN_TIMEOUT BENCH_MAX_S; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a number of messages (got '$WARMUP')"
[ "$PORT_BASE" -le 65000 ] || die "BENCH_PORT_BASE too high"

# deno/bun may live outside PATH (repo-local installs).
for d in /tmp/rt/node_modules/.bin "$HOME/.deno/bin" "$HOME/.bun/bin"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH=$PATH:$d ;; esac
done
PATH=$PATH:/usr/sbin:/sbin
export PATH

# ============================================================ outside the netns
if [ -z "${BENCH_IN_NS:-}" ]; then
  [ "$(id -u)" = 0 ] || die "must run as root (private Postfix instance, network namespace, apt-get)"
  command -v deno >/dev/null || die "deno not found on PATH"
  command -v python3 >/dev/null || die "python3 not found"

  pkgs=()
  command -v smtp-source >/dev/null && command -v postfix >/dev/null || pkgs+=(postfix)
  command -v chasquid >/dev/null && command -v chasquid-util >/dev/null || pkgs+=(chasquid)
  command -v openssl >/dev/null || pkgs+=(openssl)
  command -v unshare >/dev/null || pkgs+=(util-linux)
  command -v ip >/dev/null || pkgs+=(iproute2)
  if [ "${CLUSTER:-1}" = 1 ]; then
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || pkgs+=(redis-server)
  fi
  if [ ${#pkgs[@]} -gt 0 ]; then
    echo "bench: installing ${pkgs[*]} (apt-get, non-interactive, services not started)" >&2
    echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
    echo "postfix postfix/mailname string bench.test" | debconf-set-selections
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then   # keep invoke-rc.d from starting services
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
      made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}"
    rc=$?
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    [ $rc = 0 ] || die "apt-get install ${pkgs[*]} failed"
  fi

  STAMP=$(date -u +%Y%m%dT%H%M%SZ)
  BENCH_OUT=${BENCH_OUT:-/tmp/postern-bench-results/$STAMP}
  mkdir -p "$BENCH_OUT" || die "cannot create $BENCH_OUT"
  # The compiled binary: whatever dist/postern is; built (offline) when missing.
  if [ "$BIN" != 0 ] && [ ! -x "$REPO/dist/postern" ]; then
    echo "bench: dist/postern missing; building it with scripts/build.sh" >&2
    if ! bash "$REPO/scripts/build.sh" > "$BENCH_OUT/build.log" 2>&1; then
      [ "$BIN" = 1 ] && die "BIN=1 but scripts/build.sh failed (see $BENCH_OUT/build.log)"
      echo "bench: WARNING: scripts/build.sh failed; no binary column (see $BENCH_OUT/build.log)" >&2
      BIN=0
    fi
  fi
  [ "$BIN" = auto ] && BIN=1
  export BIN
  RT=$(mktemp -d /tmp/postern-bench.XXXXXX) || die "mktemp failed"
  chmod 755 "$RT"   # Postfix daemons (user postfix) must reach their queue dir
  export BENCH_IN_NS=1 BENCH_OUT RT STAMP
  if [ "$BENCH_NETNS" != 0 ] && unshare --net --mount --propagation private true 2>/dev/null; then
    mkdir -p "$RT/etc"
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$RT/etc/resolv.conf"
    printf '127.0.0.1 localhost %s bench.test\n' "$(hostname)" > "$RT/etc/hosts"
    export BENCH_NS=1
    exec unshare --net --mount --propagation private bash "${BASH_SOURCE[0]}" "$@"
  fi
  echo "bench: WARNING: no network namespace; running on the host's 127.0.0.1 (chasquid's SPF lookups use the system resolver)" >&2
  export BENCH_NS=0
fi

# ============================================================== inside (or not)
LOG=$BENCH_OUT/run.log
CSV=$BENCH_OUT/intake.csv
T0=$(date +%s)
log() { echo "[$(date -u +%H:%M:%S)] $*" >> "$LOG"; echo "[$(date -u +%H:%M:%S)] $*" >&2; }
now() { date +%s.%N; }
probe() { python3 "$B/probe.py" "$@"; }

PIDS=()          # every process we started (stopped in reverse order)
PFC=$RT/postfix/etc   # the discard instance (the relay row adds to it)
# Postfix instances: postfix (discard) and postfix-maildir (virtual(8) into a Maildir).
pf_master_pid() { awk '{print $1; exit}' "$RT/${1:-postfix}/spool/pid/master.pid" 2>/dev/null; }
stop_pid() {     # TERM, wait up to 15 s, then KILL
  local p=$1 i
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 150); do kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }; sleep 0.1; done
  log "pid $p ignored TERM for 15 s; KILL"
  kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
}
stop_postfix() {  # [instance]
  local inst=${1:-postfix} m; m=$(pf_master_pid "$inst")
  [ -n "$m" ] && kill -0 "$m" 2>/dev/null || return 0
  postfix -c "$RT/$inst/etc" stop >/dev/null 2>&1
  local i; for i in $(seq 150); do kill -0 "$m" 2>/dev/null || return 0; sleep 0.1; done
  stop_pid "$m"
}
CLEANED=
cleanup() {
  [ -n "$CLEANED" ] && return; CLEANED=1
  [ -n "${LOADPID:-}" ] && stop_pid "$LOADPID"
  [ -n "${SAMPLER:-}" ] && stop_pid "$SAMPLER"
  [ -d "$PFC" ] && stop_postfix postfix
  [ -d "$RT/postfix-maildir/etc" ] && stop_postfix postfix-maildir
  local i
  for (( i=${#PIDS[@]}-1; i>=0; i-- )); do stop_pid "${PIDS[$i]}"; done
  if [ -n "${KEEP_TMP:-}" ]; then log "temp dir kept: $RT"; else rm -rf "$RT"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
fail() { log "FATAL: $*"; exit 1; }

if [ "${BENCH_NS:-0}" = 1 ]; then
  ip link set lo up || fail "cannot bring lo up in the namespace"
  mount --bind "$RT/etc/resolv.conf" /etc/resolv.conf || fail "bind-mount resolv.conf"
  mount --bind "$RT/etc/hosts" /etc/hosts || fail "bind-mount hosts"
  [ "$(ip -o link | grep -vc ": lo:")" = 0 ] || fail "unexpected interfaces in the namespace: $(ip -o link)"
  python3 "$B/probe.py" nxdns 53 > "$RT/nxdns.log" 2>&1 &
  PIDS+=($!)
fi

P_DENO=$PORT_BASE; P_BUN=$((PORT_BASE+1)); P_PF=$((PORT_BASE+2)); P_CQ=$((PORT_BASE+3))
P_PFMD=$((PORT_BASE+22)); P_BIN=$((PORT_BASE+23)); P_REDIS=$((PORT_BASE+30))
# The binary is run as a user has it: written in 16 KiB pieces, as a download
# (curl) writes it. The build writes it in one piece, and the page cache
# then holds it in large folios, each mapped whole at its first fault: the
# same file idled 4-5 MB larger that way (RssFile 44 against 39 MB).
POSTERN_BIN=$RT/postern-binary
if [ "$BIN" = 1 ] && [ -x "$REPO/dist/postern" ]; then
  dd if="$REPO/dist/postern" of="$POSTERN_BIN" bs=16k status=none && chmod 755 "$POSTERN_BIN" ||
    fail "copying dist/postern to $POSTERN_BIN"
fi
if [ "${BENCH_NS:-0}" != 1 ]; then
  for p in $(seq "$PORT_BASE" $((PORT_BASE+30))); do
    python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',$p))" 2>/dev/null ||
      fail "port 127.0.0.1:$p is in use (set BENCH_PORT_BASE)"
  done
fi

case $BUN in
  auto) command -v bun >/dev/null && BUN=1 || BUN=0 ;;
  1) command -v bun >/dev/null || fail "BUN=1 but bun is not on PATH" ;;
esac
[ "$BIN" = 1 ] && { [ -x "$POSTERN_BIN" ] || fail "BIN=1 but $POSTERN_BIN is not there"; }
SERVERS=(postern-deno)
[ "$BUN" = 1 ] && SERVERS+=(postern-bun)
[ "$BIN" = 1 ] && SERVERS+=(postern-bin)
SERVERS+=(postfix-maildir postfix chasquid)
declare -A PORT=([postern-deno]=$P_DENO [postern-bun]=$P_BUN [postern-bin]=$P_BIN
  [postfix]=$P_PF [postfix-maildir]=$P_PFMD [chasquid]=$P_CQ
  [chasquid+hook]=$((PORT_BASE+6)) [postern-deno+hook]=$((PORT_BASE+9)) [postern-bun+hook]=$((PORT_BASE+10))
  [postern-deno+spf]=$((PORT_BASE+11)) [postern-bun+spf]=$((PORT_BASE+12))
  [postern-deno+reload]=$((PORT_BASE+13)) [postern-bun+reload]=$((PORT_BASE+14))
  [postern-deno+admin]=$((PORT_BASE+15)) [postern-bun+admin]=$((PORT_BASE+16))
  [postern-deno+limits]=$((PORT_BASE+24)) [postern-bun+limits]=$((PORT_BASE+25))
  [postern-bin+limits]=$((PORT_BASE+26)) [postern-deno+cluster]=$((PORT_BASE+27))
  [postern-bun+cluster]=$((PORT_BASE+28)) [postern-bin+cluster]=$((PORT_BASE+29)))
# Servers with a trivial post-data hook, measured on small c=20 only.
HOOK_SERVERS=()
if [ "$HOOKS" = 1 ]; then
  HOOK_SERVERS=(postern-deno+hook chasquid+hook)
  [ "$BUN" = 1 ] && HOOK_SERVERS=(postern-deno+hook postern-bun+hook chasquid+hook)
fi
if [ "$SPF" = 1 ]; then
  HOOK_SERVERS+=(postern-deno+spf)
  [ "$BUN" = 1 ] && HOOK_SERVERS+=(postern-bun+spf)
fi
if [ "$RELOAD" = 1 ]; then
  HOOK_SERVERS+=(postern-deno+reload)
  [ "$BUN" = 1 ] && HOOK_SERVERS+=(postern-bun+reload)
fi
if [ "$ADMIN" = 1 ]; then
  HOOK_SERVERS+=(postern-deno+admin)
  [ "$BUN" = 1 ] && HOOK_SERVERS+=(postern-bun+admin)
fi
# The cost of `cluster`: each runtime with the shared rate limits (+cluster)
# and the same configuration counting locally (+limits), interleaved.
CLUSTER_RTS=()
if [ "$CLUSTER" = 1 ]; then
  CLUSTER_RTS=(deno)
  [ "$BUN" = 1 ] && CLUSTER_RTS+=(bun)
  [ "$BIN" = 1 ] && CLUSTER_RTS+=(bin)
  for r in "${CLUSTER_RTS[@]}"; do HOOK_SERVERS+=("postern-$r+limits" "postern-$r+cluster"); done
fi
declare -A ROOTPID

# The CPU that takes most of the block devices' interrupts (virtio-blk
# request queues, NVMe, AHCI, Xen's blkif), as "CPU LINES", or nothing. A
# single-threaded event loop on that CPU also runs the completions of every
# fsync there: on this bench's 2-CPU VM, Postern's main thread held on the
# other CPU used 0.37-0.38 ms per message at c=20, held on this one
# 0.57 ms, and took 2124-2221 against 1585-1638 msgs/s (the binary, rounds
# of 3000 after the warm-up, taskset -p on the main thread only). Which one
# the scheduler gives it varies from start to start and from cell to cell,
# so each Postern cell records where its main thread was (probe.py sample).
disk_irq_cpu() {
  awk 'NR == 1 { ncpu = NF; next }
       $NF ~ /-req\.[0-9]+$|-request$|^nvme[0-9]+q[0-9]+$|blkif|ahci/ {
         names = names (names ? "," : "") $NF
         for (i = 2; i <= ncpu + 1; i++) if ($i ~ /^[0-9]+$/) sum[i - 2] += $i
       }
       END {
         best = -1
         for (c in sum) if (best < 0 || sum[c] > sum[best]) best = c
         if (best >= 0 && sum[best] > 0) print best, names
       }' /proc/interrupts 2>/dev/null
}
read -r BENCH_IRQ_CPU DISK_IRQ_LINES < <(disk_irq_cpu) || true
export BENCH_IRQ_CPU

# ---------------------------------------------------------------- versions
{
  echo "date_utc=$(date -u +%FT%TZ) stamp=$STAMP"
  echo "machine: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/{printf "%.1f GB", $2/1048576}' /proc/meminfo) RAM, temp fs $(df -T "$RT" | awk 'NR==2{print $2}')"
  echo "postern: $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?'); $(deno --version | head -1)$([ "$BUN" = 1 ] && echo "; bun $(bun --version)")"
  echo "postfix: $(postconf -d -h mail_version) (dpkg $(dpkg-query -W -f='${Version}' postfix 2>/dev/null))"
  echo "chasquid: $(chasquid -version 2>&1 | head -1)"
  echo "network: $([ "${BENCH_NS:-0}" = 1 ] && echo 'private namespace, lo only, NXDOMAIN DNS stub' || echo 'host namespace, 127.0.0.1')"
  echo "disk interrupts: $([ -n "$BENCH_IRQ_CPU" ] && echo "CPU $BENCH_IRQ_CPU ($DISK_IRQ_LINES)" || echo 'not found in /proc/interrupts')"
} > "$BENCH_OUT/versions.txt"

# ---------------------------------------------------------------- Postern
setup_postern() {
  local c=$RT/postern/config
  mkdir -p "$c/domains/example.test"
  {
    echo "hostname: bench.test"
    if [ "$POSTERN_MAX_PER_IP" != default ]; then
      echo "smtp:"
      echo "  max_connections_per_ip: $POSTERN_MAX_PER_IP"
    fi
  } > "$c/postern.yaml"
  echo user > "$c/domains/example.test/users"
  (cd "$REPO" && deno run -A src/main.ts check --config "$c") >> "$LOG" 2>&1 ||
    fail "postern check rejected the bench config (see $LOG)"
  # The same configuration plus a trivial post-data module hook.
  local h=$RT/postern/config-hook
  cp -r "$c" "$h"
  mkdir -p "$h/hooks"
  echo 'export default () => ({ action: "accept", headers: ["X-Hook: ok"] });' > "$h/hooks/post-data.ts"
  # The same configuration, rewritten every 100 ms while it is measured.
  cp -r "$c" "$RT/postern/config-reload"
  # The same configuration, its admin API polled while it is measured.
  cp -r "$c" "$RT/postern/config-admin"
}
# Polls /metrics and /status of server $1's admin API, each 10 times a
# second over one keep-alive connection, until killed; counts go to $2.
admin_poller() {
  exec python3 "$B/admin_poll.py" "$RT/$1/data" "$2"
}
# Rewrites the users file of config-reload every 100 ms, in place and by
# rename in turn, keeping the bench's user; runs until killed. One python
# process, so that the editor's own forks do not weigh on the server.
reload_editor() {
  exec python3 "$B/probe.py" edit "$RT/postern/config-reload/domains/example.test/users" user
}
# The same configuration with SPF (and DKIM/DMARC) checked for loopback
# clients, against a loopback DNS server that serves the sender's record.
setup_postern_spf() {
  local c=$RT/postern/config f=$RT/postern/spf_dns.addr
  (cd "$REPO" && exec deno run -A scripts/bench/spf_dns.ts "$f") >> "$RT/spf_dns.log" 2>&1 &
  PIDS+=($!)
  local i; for i in $(seq 100); do [ -s "$f" ] && break; sleep 0.1; done
  [ -s "$f" ] || fail "the SPF bench DNS server did not start: $(tail -3 "$RT/spf_dns.log")"
  cp -r "$c" "$RT/postern/config-spf"
  {
    cat "$c/postern.yaml"
    echo "dns:"
    echo "  servers: [\"$(cat "$f")\"]"
    echo "auth:"
    echo "  trusted_networks: []"
    # Loopback is no longer trusted, so the per-client rate limits would
    # apply to the load generator; they are not what this row measures.
    echo "rate_limits:"
    echo "  connections_per_ip_per_minute: 0"
    echo "  messages_per_ip_per_hour: 0"
  } > "$RT/postern/config-spf/postern.yaml"
  log "SPF DNS server at $(cat "$f")"
}
# Two configurations for the cost of `cluster`: loopback is not trusted, so
# that the rate limits apply to the load generator (trusted networks are
# exempt), with limits far above the load so that nothing is refused; SPF
# and DKIM/DMARC are off, as they are for the trusted load of the peer
# table. config-limits counts in the node; config-cluster counts in a
# redis-server on loopback, started here (no persistence: it holds counters).
setup_postern_cluster() {
  local c=$RT/postern/config d=$RT/redis
  mkdir -p "$d"
  redis-server --bind 127.0.0.1 --port "$P_REDIS" --save '' --appendonly no --dir "$d" \
    --daemonize no --protected-mode yes > "$d/redis.log" 2>&1 < /dev/null &
  PIDS+=($!); REDIS_PID=$!
  local i; for i in $(seq 100); do [ "$(redis_cli ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
  [ "$(redis_cli ping 2>/dev/null)" = PONG ] || fail "redis-server did not start: $(tail -3 "$d/redis.log")"
  log "redis-server pid=$REDIS_PID 127.0.0.1:$P_REDIS ($(redis-server --version | cut -d' ' -f3))"
  local v
  for v in limits cluster; do
    cp -r "$c" "$RT/postern/config-$v"
    {
      cat "$c/postern.yaml"
      echo "auth:"
      echo "  trusted_networks: []"
      echo "  spf:"
      echo "    enabled: false"
      echo "  verify: false"
      echo "rate_limits:"
      echo "  connections_per_ip_per_minute: 100000000"
      echo "  messages_per_ip_per_hour: 100000000"
      if [ "$v" = cluster ]; then
        echo "cluster:"
        echo "  url: redis://127.0.0.1:$P_REDIS"
        echo "  node_name: bench"
        # The default 50 ms: a node on a saturated 2-core machine (or the
        # server, starved of CPU) sometimes misses it, and then counts
        # locally, which is cheaper and would flatter the row; measured
        # here is the shared path, every check to the server.
        echo "  timeout: ${CLUSTER_TIMEOUT:-1s}"
      fi
    } > "$RT/postern/config-$v/postern.yaml"
    (cd "$REPO" && deno run -A src/main.ts check --config "$RT/postern/config-$v") >> "$LOG" 2>&1 ||
      fail "postern check rejected the bench config-$v (see $LOG)"
  done
}
redis_cli() { redis-cli -h 127.0.0.1 -p "$P_REDIS" "$@"; }
# Calls of the rate-limit script so far (EVALSHA, and EVAL when it was not loaded yet).
redis_script_calls() {
  redis_cli info commandstats | tr -d '\r' |
    sed -n 's/^cmdstat_eval\(sha\)\{0,1\}:calls=\([0-9]*\),.*/\2/p' | awk '{n += $1} END {print n + 0}'
}
start_postern() {  # deno|bun|bin [hook|spf|...]
  local rt=$1 name=postern-$1${2:++$2} d=$RT/postern-$1${2:++$2}
  local config=$RT/postern/config${2:+-$2}
  local port=${PORT[$name]}
  mkdir -p "$d"
  local seen; seen=$(grep -c 'event=listening' "$d/stdout.log" 2>/dev/null)
  if [ "$rt" = deno ]; then
    (cd "$REPO" && exec deno run -A src/main.ts serve --config "$config" --data "$d/data" \
      --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0) >> "$d/stdout.log" 2>> "$d/stderr.log" < /dev/null &
  elif [ "$rt" = bin ]; then
    (cd "$REPO" && exec "$POSTERN_BIN" serve --config "$config" --data "$d/data" \
      --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0) >> "$d/stdout.log" 2>> "$d/stderr.log" < /dev/null &
  else
    (cd "$REPO" && exec bun run src/main.ts serve --config "$config" --data "$d/data" \
      --listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0) >> "$d/stdout.log" 2>> "$d/stderr.log" < /dev/null &
  fi
  local pid=$!
  PIDS+=("$pid"); ROOTPID[$name]=$pid
  local i
  for i in $(seq 600); do
    [ "$(grep -c 'event=listening' "$d/stdout.log" 2>/dev/null)" -gt "${seen:-0}" ] && break
    kill -0 "$pid" 2>/dev/null || fail "$name exited at start: $(tail -5 "$d/stderr.log")"
    sleep 0.1
  done
  probe banner "$port" 30 > /dev/null || fail "$name: no 220 on 127.0.0.1:$port within 60 s"
  log "$name pid=$pid port=$port"
}

# ---------------------------------------------------------------- Postfix
setup_postfix() {  # [instance]: postfix (discard) or postfix-maildir (virtual(8) into a Maildir)
  local inst=${1:-postfix} d=$RT/${1:-postfix} tmpl=postfix-main.cf.in
  [ "$inst" = postfix-maildir ] && tmpl=postfix-maildir-main.cf.in
  mkdir -p "$d/etc" "$d/spool" "$d/data"
  chown postfix: "$d/data"
  sed -e "s#@RT@#$RT#g" -e "s#@DIR@#$d#g" "$B/$tmpl" > "$d/etc/main.cf"
  sed "s#@LISTEN@#127.0.0.1:${PORT[$inst]}#" "$B/postfix-master.cf" > "$d/etc/master.cf"
  if [ "$inst" = postfix-maildir ]; then
    # virtual(8) delivers as nobody into $d/mail/example.test/user/ (a Maildir:
    # the map's value ends in "/"), like Postern's data/mail/example.test/user/.
    mkdir -p "$d/mail/example.test/user"
    chown -R nobody:nogroup "$d/mail"
  fi
  : > "$d/maillog"
  postfix -c "$d/etc" check >> "$LOG" 2>&1 || fail "postfix check ($inst) failed (see $LOG)"
}
start_postfix() {  # [instance]
  local inst=${1:-postfix}
  postfix -c "$RT/$inst/etc" start >> "$LOG" 2>&1 || fail "postfix -c $RT/$inst/etc start failed (see $LOG)"
  local i m=
  for i in $(seq 100); do m=$(pf_master_pid "$inst"); [ -n "$m" ] && break; sleep 0.1; done
  [ -n "$m" ] || fail "postfix ($inst) master.pid did not appear"
  ROOTPID[$inst]=$m
  probe banner "${PORT[$inst]}" 60 > /dev/null || fail "$inst: no 220 on 127.0.0.1:${PORT[$inst]}"
  log "$inst master pid=$m port=${PORT[$inst]}"
}

# ---------------------------------------------------------------- chasquid
setup_chasquid() {  # [hook]
  local inst=chasquid${1:++hook} port=$P_CQ
  [ -n "${1:-}" ] && port=$((PORT_BASE+6))
  local c=$RT/$inst/etc
  mkdir -p "$c/domains/example.test" "$c/certs/bench.test" "$RT/$inst/data"
  sed -e "s#@DIR@#$RT/$inst#g" -e "s#@PORT@#$port#" -e "s#@PORT_SUB@#$((port+1))#" \
      -e "s#@PORT_SUBTLS@#$((port+2))#" "$B/chasquid.conf.in" > "$c/chasquid.conf"
  if [ -n "${1:-}" ]; then   # chasquid's post-data hook: a trivial shell script, run per message
    mkdir -p "$c/hooks"
    printf '#!/bin/sh\necho "X-Hook: ok"\n' > "$c/hooks/post-data"
    chmod 755 "$c/hooks/post-data"
  fi
  chasquid-util -C="$c" user-add "$RCPT" --password=bench-only-pw >> "$LOG" 2>&1 ||
    fail "chasquid-util user-add failed"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench.test \
    -keyout "$c/certs/bench.test/privkey.pem" -out "$c/certs/bench.test/fullchain.pem" \
    > "$RT/$inst/openssl.log" 2>&1 || fail "openssl self-signed cert failed: $(tail -3 "$RT/$inst/openssl.log")"
}
start_chasquid() {  # [hook]
  local inst=chasquid${1:++hook}
  chasquid -config_dir="$RT/$inst/etc" -logfile="$RT/$inst/chasquid.log" \
    > "$RT/$inst/stdout.log" 2>&1 < /dev/null &
  local pid=$!
  PIDS+=("$pid"); ROOTPID[$inst]=$pid
  probe banner "${PORT[$inst]}" 60 > /dev/null || fail "$inst: no 220 on 127.0.0.1:${PORT[$inst]} ($(tail -3 "$RT/$inst/chasquid.log" 2>/dev/null))"
  log "$inst pid=$pid port=${PORT[$inst]}"
}

# --------------------------------------------------- per-server evidence
# queue specs for probe.py drain
queue_specs() {
  case $1 in
    postern-*) echo "spool:$RT/$1/data/spool/queue tree:$RT/$1/data/spool/incoming" ;;
    postfix|postfix-maildir) local q; for q in maildrop incoming active deferred hold; do echo -n "tree:$RT/$1/spool/$q "; done ;;
    chasquid*) echo "prefix:$RT/$1/data/queue:m:" ;;
  esac
}
# the Maildir new/ folder a server stores the bench's mail in (none: it does not store)
maildir_of() {
  case $1 in
    postern-*) echo "$RT/$1/data/mail/example.test/user/new" ;;
    postfix-maildir) echo "$RT/postfix-maildir/mail/example.test/user/new" ;;
  esac
}
all_queue_specs() { local s; for s in "${SERVERS[@]}" "${HOOK_SERVERS[@]}"; do queue_specs "$s"; echo -n " "; done; }
# log file, accepted regex, delivered regex, rejected regex
evidence() {
  case $1 in
    postern-*) printf '%s\n' "$RT/$1/stdout.log" ' event=queued ' \
                 ' event=completed sent=1 failed=0' ' event=rejected ' ;;
    postfix)   printf '%s\n' "$RT/postfix/maillog" 'postfix/cleanup\[[0-9]+\]: [0-9A-Z]+: message-id=' \
                 'postfix/discard\[[0-9]+\]: .* status=sent' 'postfix/smtpd\[[0-9]+\]: .*(reject|warning)' ;;
    postfix-maildir) printf '%s\n' "$RT/postfix-maildir/maillog" 'postfix/cleanup\[[0-9]+\]: [0-9A-Z]+: message-id=' \
                 'postfix/virtual\[[0-9]+\]: .* status=sent' 'postfix/(smtpd|virtual)\[[0-9]+\]: .*(reject|warning|status=(deferred|bounced))' ;;
    chasquid*) printf '%s\n' "$RT/$1/mail.log" ' queued ip=' \
                 ' from=.* to=.* sent' ' (rejected|failed)' ;;
  esac
}

# Before every cell: the server must still be running and answering. One
# that died (or was stopped by something outside the bench) is reported with
# its last log lines and restarted, at most twice.
declare -A RESTARTS
ensure_running() {
  local s=$1 pid=${ROOTPID[$1]}
  kill -0 "$pid" 2>/dev/null && probe banner "${PORT[$s]}" 5 > /dev/null && return 0
  local n=${RESTARTS[$s]:-0}
  {
    echo "=== $(date -u +%T) $s (pid $pid) is not running or not answering; restart $((n+1))"
    case $s in
      postern-*) echo "--- $s stderr (last 10)"; tail -10 "$RT/$s/stderr.log" ;;
      postfix*) echo "--- maillog (last 10)"; tail -10 "$RT/$s/maillog" ;;
      chasquid*) echo "--- chasquid.log (last 10)"; tail -10 "$RT/$s/chasquid.log" ;;
    esac
  } >> "$BENCH_OUT/restarts.txt"
  log "WARN: $s (pid $pid) is not running; see $BENCH_OUT/restarts.txt"
  [ "$n" -lt 2 ] || fail "$s stopped a third time"
  RESTARTS[$s]=$((n+1))
  case $s in
    postern-*+*) stop_pid "$pid"; s=${s#postern-}; start_postern "${s%+*}" "${s#*+}" ;;
    postern-*) stop_pid "$pid"; start_postern "${s#postern-}" ;;
    postfix*) stop_postfix "$s"; start_postfix "$s" ;;
    chasquid+hook) stop_pid "$pid"; start_chasquid hook ;;
    chasquid) stop_pid "$pid"; start_chasquid ;;
  esac
}

quiesce() {
  # shellcheck disable=SC2046
  probe drain "$DRAIN_TIMEOUT" $(all_queue_specs) || log "WARN: queues not empty after ${DRAIN_TIMEOUT}s"
  sleep 1
}

echo "rep,server,size,conc,n,wall_s,msgs_per_s,cpu_s,cpu_ms_per_msg,peak_rss_tree_mb,peak_rss_main_mb,peak_pss_tree_mb,max_procs,drain_s,e2e_s,e2e_msgs_per_s,rc,src_err_lines,accepted,delivered,rejected,loadavg1,main_on_irq_cpu,status" > "$CSV"
: > "$BENCH_OUT/commands.txt"

run_cell() {  # rep server size conc
  local rep=$1 s=$2 size=$3 c=$4 n extra=()
  if [ "$size" = small ]; then n=$N_SMALL; else n=$N_LARGE; extra=(-l "$LARGE_BYTES"); fi
  local ev; mapfile -t ev < <(evidence "$s")
  local file=${ev[0]}
  ensure_running "$s"
  quiesce
  # The Maildir starts empty, so that the end of the cell is "n files in new/".
  local md; md=$(maildir_of "$s")
  local done_specs; done_specs=$(queue_specs "$s")
  if [ -n "$md" ]; then
    [ -d "$md" ] && find "$md" -mindepth 1 -maxdepth 1 -type f -delete
    done_specs="$done_specs count:$md:$n"
  fi
  local a0 d0 r0; read -r a0 d0 r0 < <(probe count "$file" "${ev[1]}" "${ev[2]}" "${ev[3]}")
  local la; la=$(cut -d' ' -f1 /proc/loadavg)
  local cell=$RT/cell; mkdir -p "$cell"
  python3 "$B/probe.py" sample "$cell/sample" "${ROOTPID[$s]}" & SAMPLER=$!
  sleep 0.3
  local cmd=(smtp-source -s "$c" -m "$n" "${extra[@]}" -f "$FROM" -t "$RCPT" "127.0.0.1:${PORT[$s]}")
  echo "${cmd[*]}" >> "$BENCH_OUT/commands.txt"
  local t0 t1 t2 rc drained=1 editor= reloads0=0 poller=
  if [[ $s == *+reload ]]; then
    reloads0=$(grep -c 'msg="policy reloaded"' "$RT/$s/stderr.log")
    reload_editor & editor=$!
  fi
  if [[ $s == *+admin ]]; then
    admin_poller "$s" "$cell/polls" & poller=$!
  fi
  local calls0=
  [[ $s == *+cluster ]] && calls0=$(redis_script_calls)
  t0=$(now)
  # in the background so that a TERM to the bench is handled at once (wait is interruptible)
  timeout "$SRC_TIMEOUT" "${cmd[@]}" > "$cell/src.out" 2> "$cell/src.err" & LOADPID=$!
  wait "$LOADPID"; rc=$?; LOADPID=
  t1=$(now)
  if [ -n "$editor" ]; then
    kill "$editor" 2>/dev/null; wait "$editor" 2>/dev/null
    log "$s: $(( $(grep -c 'msg="policy reloaded"' "$RT/$s/stderr.log") - reloads0 )) policy reloads during the run"
  fi
  if [ -n "$poller" ]; then
    kill "$poller" 2>/dev/null; wait "$poller" 2>/dev/null
    log "$s: admin API answers during the run (status count): $(tr '\n' ' ' < "$cell/polls")"
  fi
  if [ -n "$calls0" ]; then   # one script call per connection and one per message
    local calls=$(( $(redis_script_calls) - calls0 ))
    echo "$rep,$s,$n,$calls" >> "$BENCH_OUT/cluster_calls.csv"
    log "$s: $calls rate-limit script calls in redis-server for $n messages"
  fi
  # End to end: every message stored (in the Maildir) and the queue empty.
  # shellcheck disable=SC2086
  t2=$(probe drainat "$DRAIN_TIMEOUT" $done_specs) || { drained=0; t2=$(now); }
  kill -TERM "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; SAMPLER=
  # logs may trail the queue (postlogd, buffered writers): wait for the counts
  probe waitcount 15 "$file" "${ev[2]}" $((d0 + n)) > /dev/null
  local a1 d1 r1; read -r a1 d1 r1 < <(probe count "$file" "${ev[1]}" "${ev[2]}" "${ev[3]}")
  local acc=$((a1 - a0)) del=$((d1 - d0)) rej=$((r1 - r0))
  local errl; errl=$(wc -l < "$cell/src.err")
  local pk pkm pss cpu procs irq
  read -r pk pkm pss cpu procs irq < "$cell/sample" || { pk=0 pkm=0 pss=0 cpu=0 procs=0 irq=-1; }
  local st=OK
  [ "$rc" = 0 ] || st="rc=$rc"
  [ "$errl" = 0 ] || st="$st;src_errors"
  [ "$acc" = "$n" ] || st="$st;accepted=$acc"
  [ "$del" = "$n" ] || st="$st;delivered=$del"
  [ "$drained" = 1 ] || st="$st;not_stored_or_queue_not_drained"
  st=${st#OK;}
  local row
  row=$(python3 -c "
n, t0, t1, t2, cpu = $n, $t0, $t1, $t2, $cpu
print('%s,%s,%s,%s,%d,%.3f,%.1f,%.3f,%.3f,%.1f,%.1f,%.1f,%s,%.3f,%.3f,%.1f' % ('$rep', '$s', '$size', '$c',
      n, t1 - t0, n / (t1 - t0), cpu, cpu * 1000 / n, $pk / 1024, $pkm / 1024, $pss / 1024, '$procs',
      t2 - t1, max(t2, t1) - t0, n / (max(t2, t1) - t0)))")
  echo "$row,$rc,$errl,$acc,$del,$rej,$la,$irq,$st" >> "$CSV"
  log "rep$rep $s $size c=$c n=$n: $(echo "$row" | cut -d, -f6-) rc=$rc err=$errl accepted=$acc delivered=$del rejected=$rej -> $st"
  if [ "$st" != OK ]; then
    {
      echo "=== rep$rep $s $size c=$c: $st"
      echo "--- smtp-source stderr (first 10 lines)"; head -10 "$cell/src.err"
      echo "--- server log lines matching rejected/errors (last 20)"
      grep -E "${ev[3]}| level=(error|warn)" "$file" 2>/dev/null | tail -20
      case $s in postern-*) echo "--- postern stderr (last 20)"; tail -20 "$RT/$s/stderr.log" ;; esac
    } >> "$BENCH_OUT/failures.txt"
  fi
}

# ============================================ start-up time and idle memory
# Launch -> first 220 and the idle RSS/PSS 3 s later, 3 starts per server in
# interleaved rounds. Each Postern is started once before (not recorded): the
# first start generates the self-signed certificate into its data dir.
startup_cmd() {  # server
  case $1 in
    postern-deno) echo deno run -A src/main.ts serve ;;
    postern-bun) echo bun run src/main.ts serve ;;
    postern-bin) echo "$POSTERN_BIN" serve ;;
  esac
}
startup_row() {
  local order=(postern-deno) s r
  [ "$BUN" = 1 ] && order+=(postern-bun)
  [ "$BIN" = 1 ] && order+=(postern-bin)
  order+=(chasquid)
  log "start-up row: ${order[*]} (3 starts each)"
  : > "$BENCH_OUT/startup.csv"
  for r in 0 1 2 3; do
    for s in "${order[@]}"; do
      local out=$RT/startup-$s
      [ "$r" = 0 ] && [ "$s" = chasquid ] && continue
      if [ "$s" = chasquid ]; then
        probe startup "$out" "$P_CQ" 3 chasquid -config_dir="$RT/chasquid/etc" \
          -logfile="$RT/chasquid/startup.log" || log "WARN: $s did not greet within 60 s"
      else
        # shellcheck disable=SC2046
        (cd "$REPO" && exec python3 "$B/probe.py" startup "$out" "${PORT[$s]}" 3 $(startup_cmd "$s") \
          --config "$RT/postern/config" --data "$RT/$s/data" --listen "127.0.0.1:${PORT[$s]}" \
          --admin-listen 127.0.0.1:0) || log "WARN: $s did not greet within 60 s"
      fi
      [ "$r" = 0 ] && : > "$out"   # the warm-up start
    done
  done
  for s in "${order[@]}"; do
    sed "s/^/$s /" "$RT/startup-$s" | tr ' ' , >> "$BENCH_OUT/startup.csv"
  done
}

# ================================================================== run
log "results: $BENCH_OUT   temp: $RT"
setup_postern
setup_postfix postfix
setup_postfix postfix-maildir
setup_chasquid
[ "$STARTUP" = 1 ] && startup_row
start_postern deno
[ "$BUN" = 1 ] && start_postern bun
[ "$BIN" = 1 ] && start_postern bin
start_postfix postfix
start_postfix postfix-maildir
start_chasquid
if [ "$HOOKS" = 1 ]; then
  setup_chasquid hook
  start_chasquid hook
  start_postern deno hook
  [ "$BUN" = 1 ] && start_postern bun hook
fi
if [ "$SPF" = 1 ]; then
  setup_postern_spf
  start_postern deno spf
  [ "$BUN" = 1 ] && start_postern bun spf
fi
if [ "$RELOAD" = 1 ]; then
  start_postern deno reload
  [ "$BUN" = 1 ] && start_postern bun reload
fi
if [ "$ADMIN" = 1 ]; then
  start_postern deno admin
  [ "$BUN" = 1 ] && start_postern bun admin
fi
if [ "$CLUSTER" = 1 ]; then
  setup_postern_cluster
  for r in "${CLUSTER_RTS[@]}"; do start_postern "$r" limits; start_postern "$r" cluster; done
fi
sleep 2

# Warm-up. Deno (V8) and Bun (JavaScriptCore) compile their hot code while
# the first thousands of messages arrive: Bun's compiler thread took 0.16 ms
# of CPU per message over the binary's messages 1000-4000 at c=20, and 0.03
# ms after the 12,000th (perf stat per thread), while its main thread's share
# fell from 0.50-0.54 to 0.34-0.37 ms. Without a warm-up the first reps measure
# servers half cold, and unevenly: a variant server (+hook, +spf, ...) takes
# only the small c=20 cell, so in each rep it has seen fewer messages than
# the server it is compared with. So every server, the peers too, first
# takes WARMUP small messages at c=20, not recorded; launch time and idle
# memory are the start-up row's, measured on fresh starts. WARMUP is a
# count, not a multiple of N_SMALL: the compilers settle after a number of
# messages (rounds of 3000 at c=20 on one server: the binary's whole
# process used 1.63, 1.22 and 0.98 ms of CPU per message over the first
# three rounds and 0.63-0.84 from the fourth on; Deno's main thread 0.75,
# 0.70, 0.67, then 0.55-0.63 from the fourth), so 15,000 puts every cell
# past that point. A warm-up of 2 * N_SMALL (6000 in the runs before)
# left the cells of the first reps inside it.
warm_up() {
  [ "$WARMUP" -gt 0 ] || return 0
  local s rc
  log "warm-up: $WARMUP small messages at c=20 to each server, not recorded"
  for s in "${SERVERS[@]}" "${HOOK_SERVERS[@]}"; do
    ensure_running "$s"
    timeout "$SRC_TIMEOUT" smtp-source -s 20 -m "$WARMUP" -f "$FROM" -t "$RCPT" \
      "127.0.0.1:${PORT[$s]}" > /dev/null 2>&1
    rc=$?
    [ "$rc" = 0 ] || log "WARN: $s: the warm-up load ended with status $rc"
  done
  # Every cell waits for the queues to drain and empties its Maildir first.
}

# BENCH_CELLS="small:20" measures one cell (the one every variant row uses).
# BENCH_CELLS=none skips the peer table (to run only the rows switched on).
read -r -a CELLS <<< "${BENCH_CELLS:-small:1 small:20 large:20}"
[ "${CELLS[*]}" = none ] && CELLS=()
# Every (cell, server) once per rep. The servers of one cell run back to
# back (the cells in a random order, the servers within a cell too), and a
# variant row (+hook, +spf, +reload, +admin, +limits, +cluster) right
# beside the small c=20 cell of the server it is compared with (the order of
# the two random too): the rate of one server moves by tens of percent
# between minutes on a shared VM, and cells measured seconds apart share
# that, so the report compares them rep by rep (paired ratios).
rep_jobs() {
  local -A group=()
  local cell s key
  for cell in "${CELLS[@]}"; do for s in "${SERVERS[@]}"; do group["$cell:$s"]="$cell:$s"; done; done
  for s in "${HOOK_SERVERS[@]}"; do
    key=small:20:${s%%+*}
    group[$key]="${group[$key]:-} small:20:$s"
  done
  for cell in $(printf '%s\n' "${CELLS[@]}" small:20 | sort -u | shuf); do
    for key in "${!group[@]}"; do
      if [[ $key == "$cell":* ]]; then echo "${group[$key]}"; fi
    done | shuf | while read -r -a jobs; do printf '%s\n' "${jobs[@]}" | shuf; done
  done
}
warm_up
T_CELLS=$(date +%s)
for rep in $(seq "$REPS"); do
  for job in $(rep_jobs); do
    IFS=: read -r size c s <<< "$job"
    if [ $(( $(date +%s) - T_CELLS )) -ge "$BENCH_MAX_S" ]; then
      log "BENCH_MAX_S=$BENCH_MAX_S reached: skipping rep$rep $s $size c=$c"
      echo "$rep,$s,$size,$c,0,,,,,,,,,,,,,,,,,,SKIPPED" >> "$CSV"
      continue
    fi
    run_cell "$rep" "$s" "$size" "$c"
  done
done

# app-log warnings/errors from Postern over the whole run
for s in "${SERVERS[@]}" "${HOOK_SERVERS[@]}"; do
  case $s in postern-*)
    if grep -E ' level=(warn|error)' "$RT/$s/stderr.log" > "$BENCH_OUT/$s-warnings.log" 2>/dev/null; then
      log "$s logged $(wc -l < "$BENCH_OUT/$s-warnings.log") warning/error line(s): $BENCH_OUT/$s-warnings.log"
    else rm -f "$BENCH_OUT/$s-warnings.log"; fi ;;
  esac
done

# ================================================== outbound delivery
if [ "$RELAY" = 1 ]; then
  # shellcheck source=scripts/bench/relay.sh
  source "$B/relay.sh"
  relay_setup
  relay_run
fi

# ======================================================= hook call latency
if [ "$HOOKS" = 1 ] || [ "$RELAY" = 1 ]; then
  log "hook call latency (module hook, one worker)"
  for point in post-data pre-delivery-attempt; do
    (cd "$REPO" && deno run -A scripts/bench/hook_latency.ts "deno $point" "$point") \
      >> "$BENCH_OUT/hook_latency.txt" 2>> "$LOG" || log "WARN: hook latency bench failed"
    if [ "$BUN" = 1 ]; then
      (cd "$REPO" && bun run scripts/bench/hook_latency.ts "bun $point" "$point") \
        >> "$BENCH_OUT/hook_latency.txt" 2>> "$LOG" || log "WARN: hook latency bench on bun failed"
    fi
  done
fi

# ================================================= policy reload latency
if [ "$RELOAD" = 1 ]; then
  log "policy reload latency (50 edits of each kind of write)"
  (cd "$REPO" && timeout 600 deno run -A scripts/bench/reload_latency.ts deno 50) \
    > "$BENCH_OUT/reload_latency.txt" 2>> "$LOG" || log "WARN: reload latency bench failed"
  if [ "$BUN" = 1 ]; then
    (cd "$REPO" && timeout 600 bun run scripts/bench/reload_latency.ts bun 50) \
      >> "$BENCH_OUT/reload_latency.txt" 2>> "$LOG" || log "WARN: reload latency bench on bun failed"
  fi
fi

# ================================================================ report
{
  echo "Postern SMTP intake benchmark ($(date -u +%F), REPS=$REPS, N_SMALL=$N_SMALL, N_LARGE=$N_LARGE x $LARGE_BYTES B)"
  sed 's/^/  /' "$BENCH_OUT/versions.txt"
  cat <<EOF
  load: smtp-source -s {1|20} -m N [-l $LARGE_BYTES] -f $FROM -t $RCPT 127.0.0.1:PORT
        (new connection per message, no pipelining; the load generator shares the CPUs)
  warm-up: every server first took $WARMUP small messages at c=20, not recorded (JIT runtimes are
        measured warm, as a server runs after its first minutes; the start-up row is cold)
  durability before "250":
    postern   spool file fdatasync + queue dir fsync (group commit) before 250, then a real Maildir
              delivery (another fdatasync + dir fsync) -- durable, and does more work than the peers
    postfix-maildir  cleanup fsyncs the queue file before 250, then virtual(8) writes the message into
              a Maildir (tmp/, fsync, rename into new/) -- the peer that stores like Postern
    postfix   cleanup fsyncs the queue file before 250, then the discard transport drops it -- durable
    chasquid  1.11 writes the queue file with rename but NO fsync, then forks /bin/true as MDA -- not durable
  postern-bin: the compiled binary $(ls -l --time-style=+%FT%T "$REPO/dist/postern" 2>/dev/null | awk '{print $6", "$5" bytes"}'),
              run from a copy written in 16 KiB pieces, as a download writes it
  Postern config: hostname bench.test, user@example.test; smtp.max_connections_per_ip=$POSTERN_MAX_PER_IP
  CPU ms/msg: utime+stime of the server's process tree incl. reaped children, smtp-source start to queue
              drained; peak RSS: sum of VmRSS over the tree every 100 ms; PSS: proportional set size of the
              tree (the fair figure for multi-process Postfix, whose RSS sum counts shared pages per process)
EOF
  echo
  python3 "$B/report.py" "$CSV"; echo "$?" > "$RT/report.rc"
  echo
  if [ -s "$BENCH_OUT/hook_latency.txt" ]; then
    echo "Module hook round trip (Postern -> deno worker -> Postern, trivial hook):"
    sed 's/^/  /' "$BENCH_OUT/hook_latency.txt"
    echo
  fi
  if [ -s "$BENCH_OUT/relay.csv" ]; then
    echo "Outbound delivery: $RELAY_N small messages at c=20, injection until smtp-sink has them all and the queue is empty:"
    relay_report
    echo
  fi
  if [ -s "$BENCH_OUT/reload_latency.txt" ]; then
    echo "Policy reload latency:"
    sed 's/^/  /' "$BENCH_OUT/reload_latency.txt"
    echo
  fi
  echo "raw rows: $CSV"
  [ -f "$BENCH_OUT/failures.txt" ] && echo "FAILURES: see $BENCH_OUT/failures.txt"
  [ -f "$BENCH_OUT/restarts.txt" ] && echo "RESTARTS (a server had stopped between cells): see $BENCH_OUT/restarts.txt"
  ls "$BENCH_OUT"/postern-*-warnings.log 2>/dev/null | sed 's/^/Postern warnings: /'
} | tee "$BENCH_OUT/summary.txt"
log "done in $(( $(date +%s) - T0 )) s"
[ "$(cat "$RT/report.rc" 2>/dev/null)" = 0 ]
