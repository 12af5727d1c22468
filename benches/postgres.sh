#!/usr/bin/env bash
# The orders flow on PostgreSQL against the embedded store, same machine, same run (issue 19).
#
#   bash benches/postgres.sh [REQUESTS] [SOAK_SECS]
#   PG_EXTRA="-c log_min_duration_statement=200" bash benches/postgres.sh ...   (more settings)
#   PG_STATEMENTS=1 bash benches/postgres.sh ...   (pg_stat_statements: the statements that took
#                                                   PostgreSQL's time in the orders run)
#   PG_KEEP_LOG=/tmp/pg.log bash benches/postgres.sh ...   (PostgreSQL's log kept, for auto_explain)
#
# Starts a PostgreSQL of its own (Debian's server binaries, initdb into a temp dir, a free port,
# stopped by PID at the end), runs `loadgen --flow orders` on the embedded store, then on
# PostgreSQL, and prints the WAL written (pg_stat_wal) and PostgreSQL's CPU (all its processes,
# from /proc) per delivered order. With SOAK_SECS it then runs a soak at a steady rate and
# prints throughput per minute, dead tuples and table sizes every minute. Between the two it
# runs the durable floor on the same PostgreSQL (loadgen --postgres-floor: HMAC, one committed
# insert per batch before the 202s, the mapping, POST, delete; floor.rs) with the same figures,
# so the ratio to what this machine allows on PostgreSQL is measured in the same invocation.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-100000}
soak=${2:-0}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d /tmp/handoff-pg-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$dir"; as_pg=(runuser -u postgres --); fi
echo bench > "$dir/pw"
"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U handoff --auth=scram-sha-256 --pwfile="$dir/pw" >/dev/null
"${as_pg[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories="$dir" -c shared_buffers=512MB -c max_wal_size=4GB \
  -c max_connections=200 -c log_autovacuum_min_duration=0 \
  ${PG_STATEMENTS:+-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on} \
  ${PG_EXTRA:-} \
  >"$dir/postgres.log" 2>&1 &
pg=$!
# Stopped by the postmaster's own PID (under runuser, $! is runuser's), then its launcher.
stop_pg() {
  local master
  master=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
  [ -n "$master" ] && kill -INT "$master" 2>/dev/null
  kill -INT "$pg" 2>/dev/null
  wait "$pg" 2>/dev/null
  [ -n "${PG_KEEP_LOG:-}" ] && cp "$dir/postgres.log" "$PG_KEEP_LOG"
  rm -rf "$dir"
}
trap stop_pg EXIT
until grep -q "ready to accept connections" "$dir/postgres.log"; do sleep 0.1; done
url="postgres://handoff:bench@127.0.0.1:$port/postgres"
sql() { PGPASSWORD=bench psql -h 127.0.0.1 -p "$port" -U handoff -d postgres -Atqc "$1"; }
# CPU seconds of PostgreSQL: the postmaster's own and that of its children it has reaped (the
# backends of connections closed by then), read from its /proc stat (fields 14-17).
pg_cpu() {
  local master f
  master=$(head -1 "$dir/data/postmaster.pid")
  read -r -a f < "/proc/$master/stat"
  local ticks=$((f[13] + f[14] + f[15] + f[16]))
  for child in $(pgrep -P "$master"); do
    { read -r -a f < "/proc/$child/stat"; } 2>/dev/null || continue
    ticks=$((ticks + f[13] + f[14]))
  done
  echo "scale=2; $ticks / $(getconf CLK_TCK)" | bc
}

echo "== embedded store"
target/release/loadgen --flow orders --requests "$requests" --compare-bare false
echo "== PostgreSQL at 127.0.0.1:$port"
if [ -n "${PG_STATEMENTS:-}" ]; then
  sql "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
  sql "SELECT pg_stat_statements_reset()" >/dev/null
fi
wal0=$(sql "SELECT wal_bytes FROM pg_stat_wal")
cpu0=$(pg_cpu)
target/release/loadgen --flow orders --requests "$requests" --compare-bare false --postgres-url "$url"
wal1=$(sql "SELECT wal_bytes FROM pg_stat_wal")
cpu1=$(pg_cpu)
delivered=$(sql "SELECT count(*) FROM finished WHERE job->>'flow' = 'opportunity_to_sales_order'")
echo "  PostgreSQL: $delivered orders delivered; WAL $(( (wal1 - wal0) / 1024 / 1024 )) MiB," \
  "$(( (wal1 - wal0) / (delivered > 0 ? delivered : 1) )) bytes per delivered order" \
  "(accounts included); CPU $(echo "$cpu1 - $cpu0" | bc) s," \
  "$(echo "scale=1; ($cpu1 - $cpu0) * 1000000 / $delivered" | bc) µs per delivered order"
sql "SELECT relname, n_live_tup, n_dead_tup, pg_size_pretty(pg_total_relation_size(relid)) FROM pg_stat_user_tables WHERE n_live_tup + n_dead_tup > 0 ORDER BY relname"
if [ -n "${PG_STATEMENTS:-}" ]; then
  echo "== statements by total time (calls | total ms | µs per call | rows | µs per delivered order | planning µs per delivered order)"
  sql "SELECT calls, round(total_exec_time), round(mean_exec_time * 1000), rows,
              round(total_exec_time * 1000 / $delivered), round(total_plan_time * 1000 / $delivered),
              left(regexp_replace(query, '\s+', ' ', 'g'), 150)
       FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 20"
  echo "== index scans on jobs (index | scans | size)"
  sql "SELECT indexrelname, idx_scan, pg_size_pretty(pg_relation_size(indexrelid))
       FROM pg_stat_user_indexes WHERE relname = 'jobs' ORDER BY idx_scan DESC"
fi

echo "== the durable floor on the same PostgreSQL"
wal0=$(sql "SELECT wal_bytes FROM pg_stat_wal")
cpu0=$(pg_cpu)
target/release/loadgen --flow orders --requests "$requests" --postgres-url "$url" --postgres-floor true
wal1=$(sql "SELECT wal_bytes FROM pg_stat_wal")
cpu1=$(pg_cpu)
echo "  PostgreSQL under the floor: WAL $(( (wal1 - wal0) / requests )) bytes per order;" \
  "CPU $(echo "$cpu1 - $cpu0" | bc) s, $(echo "scale=1; ($cpu1 - $cpu0) * 1000000 / $requests" | bc) µs per order"

if [ "$soak" -gt 0 ]; then
  echo "== soak: $soak s at 1,000 orders/s on PostgreSQL"
  target/release/loadgen --flow orders --rate 1000 --requests $((soak * 1000)) \
    --duration-secs "$soak" --compare-bare false --postgres-url "$url" &
  load=$!
  last=0
  for minute in $(seq 1 $((soak / 60))); do
    sleep 60
    now=$(sql "SELECT count(*) FROM finished")
    echo "  minute $minute: $((now - last)) jobs finished;" \
      "$(sql "SELECT string_agg(relname || ' ' || n_dead_tup || ' dead, ' || pg_size_pretty(pg_total_relation_size(relid)), '; ') FROM pg_stat_user_tables WHERE relname IN ('jobs', 'parts', 'seen', 'instances', 'poll_cursors')")"
    last=$now
  done
  wait $load
  echo "== autovacuum runs and slow statements (postgres.log)"
  grep -E "automatic vacuum|automatic analyze|duration:" "$dir/postgres.log" | cut -c1-300 || true
fi
