#!/usr/bin/env bash
# Writ's Cedar engine and the reference @cedar-policy/cedar-wasm side by side, in one run, on the same generated files:
# workload-identity-shaped policy sets (default 10 and 1,000 policies), parsed once, decided one request at a time on
# one thread. Checks that both engines give identical decisions (decision, reasons, erroring policies) on the whole
# request mix, then prints decisions/s and per-decision p50/p99 (median over the runs) and the ratio to the reference.
# Rows: writ (entities parsed once into a store, as the server holds them), writ-json-per-call (request and reachable
# entities parsed from JSON on every call, the shape of a cedar-wasm call), cedar-wasm (policies pre-parsed; the
# reachable entities passed as JSON on every call, as its API requires).
#
#   benchmarks/cedar/bench.sh                 # 10 s per engine and size after 3 s of warm-up, 1 run
#   RUNS=3 SECONDS_PER_RUN=10 benchmarks/cedar/bench.sh
#
# Environment: RUNS (1), SECONDS_PER_RUN (10), WARMUP (3), SIZES ("10 1000"), OUT (a new temp dir; the generated
# inputs and raw results stay there), WASM_FULL=1 to also time cedar-wasm with the whole entities file on every call.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
runs=${RUNS:-1}
seconds=${SECONDS_PER_RUN:-10}
warmup=${WARMUP:-3}
sizes=${SIZES:-"10 1000"}
out=${OUT:-$(mktemp -d -t writ-cedarbench.XXXXXX)}
mkdir -p "$out"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if [ ! -d "$root/tests/interop/node_modules/@cedar-policy/cedar-wasm" ]; then
  (cd "$root/tests/interop" && npm ci --no-audit --no-fund --loglevel=error)
fi
project="$here/CedarBench/CedarBench.csproj"
dotnet build "$project" -c Release -nologo -v q >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2; exit 1; }
cedarbench() { dotnet run --project "$project" -c Release --no-build -- "$@"; }

cedarbench generate "$out" $sizes
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "inputs in $out; $runs run(s) of ${seconds}s per engine and size after ${warmup}s warm-up" >&2
for run in $(seq 1 "$runs"); do
  for n in $sizes; do
    echo "run $run/$runs, $n policies: writ" >&2
    cedarbench run "$out" "$n" "$seconds" "$warmup" "$out/result-writ-$n-$run.json"
    echo "run $run/$runs, $n policies: writ, request and entities parsed from JSON on every call" >&2
    cedarbench run "$out" "$n" "$seconds" "$warmup" "$out/result-writ-json-$n-$run.json" json
    echo "run $run/$runs, $n policies: cedar-wasm" >&2
    node "$here/wasm-bench.mjs" "$out" "$n" "$seconds" "$warmup" "$out/result-cedar-wasm-$n-$run.json"
    if [ "${WASM_FULL:-0}" = 1 ]; then
      echo "run $run/$runs, $n policies: cedar-wasm, whole entities file per call" >&2
      node "$here/wasm-bench.mjs" "$out" "$n" "$seconds" "$warmup" "$out/result-cedar-wasm-full-$n-$run.json" full
    fi
  done
done
node "$here/report.mjs" "$out"
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
echo "machine: $(nproc) cores, ${cpu:-unknown CPU}; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
