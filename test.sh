#!/usr/bin/env bash
# Runs every Writ test. Starts what the tests need (a throwaway PostgreSQL on 127.0.0.1,
# the npm interop clients), shows progress per test project while it runs, and prints
# `N passed, N failed, N skipped` from the real results last. A failed build is a failed run
# (`0 passed, 1 failed`): stale binaries are never tested.
set -uo pipefail
cd "$(dirname "$0")"
root=$(pwd)
shared="$root/../shared"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# Node clients nobody here wrote, for interop tests (grpc-js, proto-loader, jose, cedar-wasm).
if [ -f tests/interop/package.json ] && command -v npm >/dev/null; then
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error) || echo "warning: npm install failed; interop tests will fail" >&2
fi

# PostgreSQL for the storage conformance suite (unless the caller already points at one). WRIT_TEST_PG=skip is only
# for a developer's own `dotnet test`: this script runs the PostgreSQL tests, so a server it cannot start fails them.
[ "${WRIT_TEST_PG:-}" = skip ] && unset WRIT_TEST_PG
pg_stop=""
if [ -z "${WRIT_TEST_PG:-}" ]; then
  if [ -x "$shared/scripts/pg-start.sh" ] && out=$("$shared/scripts/pg-start.sh" 2>/tmp/writ-pg-start.log); then
    eval "$out"; pg_stop="$PG_STOP"
  else
    unset WRIT_TEST_PG
    echo "warning: could not start PostgreSQL (see /tmp/writ-pg-start.log); the PostgreSQL tests will fail" >&2
  fi
fi
log=$(mktemp)
durations=$(mktemp)
cleanup() { rm -f "$log" "$durations"; [ -n "$pg_stop" ] && eval "$pg_stop"; }
trap cleanup EXIT

if ! dotnet build Writ.slnx -c Release -warnaserror >"$log" 2>&1; then
  grep -E ': (error|warning) ' "$log" | sort -u | head -n 20 >&2
  tail -n 3 "$log" >&2
  echo "the build failed: nothing was tested"
  echo "0 passed, 1 failed"
  exit 1
fi
tail -n 3 "$log"

# Every test result is printed by `--output Detailed` followed by a "  from <module>" line; the filter keeps failures and
# skips (with their messages), prints each module's running counts every 50 results and its totals when it ends, and
# writes every test's duration (ms) to a file for the slow-test list below. The raw output stays in $log.
dotnet test --solution Writ.slnx -c Release --no-build --output Detailed "$@" 2>&1 | tee "$log" | awk -v durations="$durations" '
  function ms(text,   n, i, parts, v, total) {
    total = 0; n = split(text, parts, " ")
    for (i = 1; i <= n; i++) {
      v = parts[i]
      if (v ~ /ms$/) total += substr(v, 1, length(v) - 2)
      else if (v ~ /h$/) total += substr(v, 1, length(v) - 1) * 3600000
      else if (v ~ /m$/) total += substr(v, 1, length(v) - 1) * 60000
      else if (v ~ /s$/) total += substr(v, 1, length(v) - 1) * 1000
    }
    return total
  }
  function module(path,   m) { m = path; sub(/ \(.*$/, "", m); sub(/^.*\//, "", m); sub(/\.dll$/, "", m); return m }
  function show(line) { print line; fflush() }
  /^(passed|failed|skipped|error|timeout|cancelled) / {
    outcome = $1; name = $0; sub(/^[a-z]+ /, "", name); dur = ""
    if (match(name, / \([0-9hms ]+\)$/)) { dur = substr(name, RSTART + 2, RLENGTH - 3); name = substr(name, 1, RSTART - 1) }
    echo = (outcome != "passed")
    if (echo) show($0)
    next
  }
  /^  from / {
    m = module(substr($0, 8))
    if (outcome == "passed") passed[m]++; else if (outcome == "skipped") skipped[m]++; else failed[m]++
    if (dur != "") print ms(dur) "\t" m "\t" name > durations
    n = passed[m] + failed[m] + skipped[m]
    if (n % 50 == 0) show(sprintf("  [%s] %d done: %d passed, %d failed, %d skipped", m, n, passed[m], failed[m], skipped[m]))
    echo = 0; outcome = ""
    next
  }
  /^Running tests from / { show("[" module(substr($0, 20)) "] started"); next }
  /^\/.*\.dll \(/ {
    m = module($0); state = $0; sub(/^.*\) /, "", state)
    show(sprintf("[%s] %s: %d passed, %d failed, %d skipped", m, state, passed[m], failed[m], skipped[m]))
    next
  }
  /^Test run summary:/ || /^  (total|failed|succeeded|skipped|duration):/ { show($0); next }
  echo { show($0) }
'
status=${PIPESTATUS[0]}

slow=$(sort -t "$(printf '\t')" -k1,1 -rn "$durations" | awk -F '\t' '$1 > 30000 { printf "  %6.1f s  %s  %s\n", $1 / 1000, $2, $3 }' | head -n 15)
if [ -n "$slow" ]; then
  echo "slowest tests (over 30 s):"
  echo "$slow"
fi

total=$(grep -E '^\s+total:' "$log" | tail -1 | grep -oE '[0-9]+')
failed=$(grep -E '^\s+failed:' "$log" | tail -1 | grep -oE '[0-9]+')
passed=$(grep -E '^\s+succeeded:' "$log" | tail -1 | grep -oE '[0-9]+')
skipped=$(grep -E '^\s+skipped:' "$log" | tail -1 | grep -oE '[0-9]+')
if [ -z "$total" ]; then
  echo "0 passed, 1 failed"   # the run did not even produce a summary: count it as a failure
  exit 1
fi
[ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ] && failed=1   # a crashed test host is a failure, not silence
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$status"
