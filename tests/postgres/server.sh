#!/usr/bin/env bash
# A PostgreSQL of the suite's own for the second pass of tests/run.sh (the delivery, crash,
# operate and dashboard tests on the PostgreSQL backend).
#
#   tests/postgres/server.sh start DIR   initdb into DIR/data, start on a free port of 127.0.0.1,
#                                        print the URL of its `postgres` database
#   tests/postgres/server.sh stop DIR    stop it by its PID (a fast shutdown), remove DIR
#
# Debian's server binaries (package postgresql); run as root, the server runs as `postgres`.
set -euo pipefail
action=$1
dir=$2
case "$action" in
  start)
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    rm -rf "$dir"
    mkdir -p "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    echo suite > "$dir/pw"
    as_pg=()
    if [ "$(id -u)" = 0 ]; then chown -R postgres:postgres "$dir"; as_pg=(runuser -u postgres --); fi
    "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U handoff --auth=scram-sha-256 --pwfile="$dir/pw" >/dev/null
    "${as_pg[@]}" "$bin/postgres" -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 \
      -c unix_socket_directories="$dir" -c max_connections=300 >"$dir/postgres.log" 2>&1 &
    echo $! > "$dir/pid"
    for _ in $(seq 300); do
      grep -q "ready to accept connections" "$dir/postgres.log" && break
      sleep 0.1
    done
    grep -q "ready to accept connections" "$dir/postgres.log" || { cat "$dir/postgres.log" >&2; exit 1; }
    # The postmaster's own PID: under runuser, $! is runuser's, which does not pass SIGINT on.
    head -1 "$dir/data/postmaster.pid" > "$dir/pid"
    echo "postgres://handoff:suite@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [ -f "$dir/pid" ]; then
      pid=$(cat "$dir/pid")
      kill -INT "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
