#!/usr/bin/env bash
# The chaos test's long version (issue #16 item 6): the harness of tests/Writ.IntegrationTests/ChaosTests.cs with the
# issue's figures — 3 servers on one PostgreSQL, 3 agents, 204 streaming workloads (6 processes × 34 streams), 30 s
# X.509-SVIDs, a random server killed (SIGKILL) every 10 s and restarted, an SVID revoked every 10 s, for 2 minutes —
# then prints the result (JSON: rotations, misses, ledger records and gaps, duplicate serials, revocations delivered).
# Every WRIT_CHAOS_* variable may be set to change the run:
#   WRIT_CHAOS_SERVERS (3) WRIT_CHAOS_AGENTS (3) WRIT_CHAOS_PROCESSES (2 per agent) WRIT_CHAOS_STREAMS (34 per process)
#   WRIT_CHAOS_TTL (30 s) WRIT_CHAOS_KILL_EVERY (10 s) WRIT_CHAOS_SECONDS (120) WRIT_CHAOS_REVOKE_EVERY (10 s)
# PostgreSQL: WRIT_TEST_PG (an Npgsql superuser connection string), else one is started with ../shared/scripts/pg-start.sh.
# Usage: benchmarks/chaos.sh            (builds first; BUILD=0 skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
export WRIT_CHAOS_SERVERS=${WRIT_CHAOS_SERVERS:-3} WRIT_CHAOS_SECONDS=${WRIT_CHAOS_SECONDS:-120}
export WRIT_CHAOS_AGENTS=${WRIT_CHAOS_AGENTS:-3} WRIT_CHAOS_PROCESSES=${WRIT_CHAOS_PROCESSES:-2} WRIT_CHAOS_STREAMS=${WRIT_CHAOS_STREAMS:-34}
export WRIT_CHAOS_TTL=${WRIT_CHAOS_TTL:-30} WRIT_CHAOS_KILL_EVERY=${WRIT_CHAOS_KILL_EVERY:-10} WRIT_CHAOS_REVOKE_EVERY=${WRIT_CHAOS_REVOKE_EVERY:-10}
pg_stop=""
if [ -z "${WRIT_TEST_PG:-}" ]; then
  eval "$(../shared/scripts/pg-start.sh 55499)"; pg_stop="$PG_STOP"
fi
report=$(mktemp)
trap 'rm -f "$report"; [ -n "$pg_stop" ] && eval "$pg_stop"' EXIT
export WRIT_CHAOS_REPORT="$report"
[ -d tests/interop/node_modules ] || (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
[ "${BUILD:-1}" = 0 ] || dotnet build tests/Writ.IntegrationTests -c Release -warnaserror >/dev/null
status=0
dotnet test --project tests/Writ.IntegrationTests -c Release --no-build -- --filter-class '*ChaosTests' >&2 || status=$?
echo "servers=$WRIT_CHAOS_SERVERS agents=$WRIT_CHAOS_AGENTS streams=$((WRIT_CHAOS_AGENTS * WRIT_CHAOS_PROCESSES * WRIT_CHAOS_STREAMS)) ttl=${WRIT_CHAOS_TTL}s kill_every=${WRIT_CHAOS_KILL_EVERY}s seconds=$WRIT_CHAOS_SECONDS"
cat "$report"
exit $status
