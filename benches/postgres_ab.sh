#!/usr/bin/env bash
# Two builds of handoff on PostgreSQL, alternating, so a change is measured against its base in
# the same minutes (this host's speed moves by a third within an hour: figures from different
# runs of benches/postgres.sh are not comparable).
#
#   bash benches/postgres_ab.sh BASE_CHECKOUT CHANGED_CHECKOUT [ROUNDS] [REQUESTS]
#
# Each checkout needs its release build (`cargo build --release`, loadgen included). Runs
# benches/postgres.sh REQUESTS (default 20000) from each, ROUNDS times (default 3), base first,
# and prints one line per run, then the medians per checkout: PostgreSQL orders/s, the ratio
# to the embedded store of the same invocation, acks p99, CPU per order of PostgreSQL and of
# the instance.
set -euo pipefail
base=$(realpath "$1") changed=$(realpath "$2") rounds=${3:-3} requests=${4:-20000}
out=$(mktemp -d /tmp/handoff-pg-ab.XXXXXX)

# The figures of one run's output, tab-separated: pg/s, embedded/s, ratio %, p99 ms, PostgreSQL
# µs per order, instance µs per order.
figures() {
  awk '
    function first(text) { sub(/ .*/, "", text); return text }
    /from first to last/ { n++; match($0, /= [0-9]+ orders\/s/); rate[n] = substr($0, RSTART + 2, RLENGTH - 11) }
    /orders: [0-9]+ ok/ { k++; if (k == 2) { match($0, /p99 [0-9.]+/); p99 = substr($0, RSTART + 4, RLENGTH - 4) } }
    /per delivered order: [0-9]+ µs of CPU/ { c++; if (c == 2) { match($0, /[0-9]+ µs/); inst = first(substr($0, RSTART, RLENGTH)) } }
    /PostgreSQL: [0-9]+ orders delivered/ { match($0, /[0-9.]+ µs per delivered/); pg = first(substr($0, RSTART, RLENGTH)) }
    END { printf "%d\t%d\t%.0f\t%s\t%s\t%s\n", rate[2], rate[1], 100 * rate[2] / rate[1], p99, pg, inst }
  ' "$1"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf "run\tcheckout\tPostgreSQL/s\tembedded/s\tratio %%\tp99 ms\tPostgreSQL µs\tinstance µs\n"
for round in $(seq "$rounds"); do
  for side in base changed; do
    dir=$base
    [ "$side" = changed ] && dir=$changed
    (cd "$dir" && bash benches/postgres.sh "$requests" > "$out/$side.$round.txt" 2>&1)
    figures "$out/$side.$round.txt" > "$out/$side.$round.tsv"
    printf "%s\t%s\t%s\n" "$round" "$side" "$(cat "$out/$side.$round.tsv")"
  done
done
for side in base changed; do
  line="median\t$side"
  for column in 1 2 3 4 5 6; do
    line="$line\t$(cat "$out/$side".*.tsv | cut -f"$column" | median)"
  done
  printf "%b\n" "$line"
done
echo "(each run's whole output: $out)"
