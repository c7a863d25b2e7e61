#!/usr/bin/env bash
# Runs every Writ test. Starts what the tests need (a throwaway PostgreSQL on 127.0.0.1,
# the npm interop clients) and prints `N passed, N failed, N skipped` from the real results last.
set -uo pipefail
cd "$(dirname "$0")"
root=$(pwd)
shared="$root/../shared"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# Node clients nobody here wrote, for interop tests (grpc-js, proto-loader, jose, cedar-wasm).
if [ -f tests/interop/package.json ] && command -v npm >/dev/null; then
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error) || echo "warning: npm install failed; interop tests will fail" >&2
fi

# PostgreSQL for the storage conformance suite (unless the caller already points at one).
pg_stop=""
if [ -z "${WRIT_TEST_PG:-}" ] && [ -x "$shared/scripts/pg-start.sh" ]; then
  if out=$("$shared/scripts/pg-start.sh" 2>/tmp/writ-pg-start.log); then
    eval "$out"; pg_stop="$PG_STOP"
  else
    echo "warning: could not start PostgreSQL (see /tmp/writ-pg-start.log); PostgreSQL tests will report it" >&2
  fi
fi
cleanup() { [ -n "$pg_stop" ] && eval "$pg_stop"; }
trap cleanup EXIT

log=$(mktemp)
dotnet build Writ.slnx -c Release -warnaserror 2>&1 | tail -n 3
dotnet test --solution Writ.slnx -c Release --no-build "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

total=$(grep -E '^\s+total:' "$log" | tail -1 | grep -oE '[0-9]+')
failed=$(grep -E '^\s+failed:' "$log" | tail -1 | grep -oE '[0-9]+')
passed=$(grep -E '^\s+succeeded:' "$log" | tail -1 | grep -oE '[0-9]+')
skipped=$(grep -E '^\s+skipped:' "$log" | tail -1 | grep -oE '[0-9]+')
rm -f "$log"
if [ -z "$total" ]; then
  echo "0 passed, 1 failed"   # the run did not even produce a summary: count it as a failure
  exit 1
fi
[ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ] && failed=1   # a crashed test host is a failure, not silence
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$status"
