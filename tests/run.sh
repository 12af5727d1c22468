#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, then runs every test.
#
#   tests/run.sh            (CI runs exactly this through .ci/run)
#
# Installs into target/reference/ (ignored by git):
#   venv/          a Python virtualenv with the senders' signing libraries (PyPI)
#   node_modules/  Stripe's Node library (npm)
# and target/schemathesis/venv (PyPI: schemathesis, run against the API's OpenAPI document),
# and target/tryton/: the Tryton 8.2 ERP (PyPI, SQLite), started on 127.0.0.1:8069 for the
# adapter tests and stopped by its PID when this script exits. Debian's chromium and
# chromium-driver are installed (apt) when missing, for the dashboard's browser test, and
# Debian's postgresql (server binaries; each test runs initdb into a temp dir on a free port,
# and the delivery, crash, operate and dashboard tests run a second time on a PostgreSQL of
# their own: tests/postgres/server.sh, stopped by its PID).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
# A hung test fails the run after a bound instead of holding CI to its limit.
bounded() {
  local secs=$1; shift
  local rc=0
  timeout --kill-after=30 "$secs" "$@" || rc=$?
  [ "$rc" = 124 ] && echo "!! not finished within $secs s (a hung test?): $*"
  return "$rc"
}
ref=target/reference
mkdir -p "$ref"

step "reference signing libraries (PyPI: standardwebhooks, svix, hubspot-api-client)"
if [ ! -x "$ref/venv/bin/python" ]; then
  python3 -m venv "$ref/venv"
fi
"$ref/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/reference/requirements.txt

step "reference signing library (npm: stripe)"
if [ ! -d "$ref/node_modules/stripe" ]; then
  npm install --silent --no-audit --no-fund --prefix "$ref" stripe@23.1.0 >/dev/null
fi

step "OpenAPI fuzzer (PyPI: schemathesis) for the JSON API"
if [ ! -x target/schemathesis/venv/bin/st ]; then
  python3 -m venv target/schemathesis/venv
fi
target/schemathesis/venv/bin/python -m pip install --quiet --disable-pip-version-check schemathesis==4.32.5

step "Chromium and ChromeDriver (Debian: chromium, chromium-driver) for the dashboard test"
if ! command -v chromedriver >/dev/null || [ ! -x /usr/bin/chromium ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromedriver --version

step "PostgreSQL server binaries (Debian: postgresql) for the scale-out tests"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq postgresql >/dev/null
fi
ls -d /usr/lib/postgresql/*/bin

step "Tryton ERP (PyPI: trytond 8.2 + sale, sale_discount; SQLite) on 127.0.0.1:8069"
tryton_data="$PWD/target/tryton/data"
bash tests/tryton/stop_tryton.sh "$tryton_data"   # a server left by an interrupted run
pg_dir="$PWD/target/postgres-suite"
trap 'bash tests/tryton/stop_tryton.sh "$tryton_data"; bash tests/postgres/server.sh stop "$pg_dir"' EXIT
bash tests/tryton/start_tryton.sh "$PWD/target/tryton/venv" 8069 "$tryton_data" > target/tryton-start.log 2>&1 \
  || { cat target/tryton-start.log; exit 1; }
tail -n 3 target/tryton-start.log
export TRYTON_URL=http://127.0.0.1:8069

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

step "tests"
bounded 2400 cargo test --locked --all-targets 2>&1 | tee target/test-output.txt

step "the delivery, crash, operate and dashboard tests again, on the PostgreSQL backend"
SUITE_POSTGRES_URL=$(bash tests/postgres/server.sh start "$pg_dir") \
  bounded 900 cargo test --locked --test it -- delivery:: crash:: operate:: browser:: 2>&1 | tee -a target/test-output.txt
bash tests/postgres/server.sh stop "$pg_dir"

step "the JSON API against its OpenAPI document (schemathesis, every check)"
bash tests/schemathesis.sh target/debug/handoff target/schemathesis/venv/bin/st 60

# One closing line for the whole suite (every "test result:" line summed).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\nsuite: %d passed, %d failed\n", p, f }' target/test-output.txt
