#!/usr/bin/env bash
# Pipeline benchmark, side by side (docs/benchmarks.md, "Pipeline"): `diffy new analysis` with the
# evidence-dir target and collection and the local-cluster analysis, against the DuckDB stacking
# query a responder would run instead (scripts/duckdb_stacking.py: read_csv over the same evidence,
# GROUP BY row, hosts ranked by rare rows, 2 threads), on the same fleets in one run. Each tool runs
# --runs times per size, alternating, under /usr/bin/time (wall time and peak RSS, warm page
# cache); the summary gives medians, diffy's speed-up, how diffy's time grows from one size to the
# next, peak memory against the input and against DuckDB's, and each budget's verdict.
#
#   scripts/bench-pipeline.sh [--sizes "1000x1000 10000x1000 100000x100 json:1000x1000"]
#                             [--runs 3] [--out DIR] [--no-build]
#
# Sizes are HOSTSxROWS of text evidence (packages.txt, read with --payload-plugin local-command),
# or json:HOSTSxROWS of JSON evidence (packages.json as `osqueryi --json` writes it, read with no
# options at all: the evidence payload, parsed as JSON; DuckDB reads it with read_json).
# Fleets are generated once under ${DIFFY_BENCH_CACHE:-${TMPDIR:-/tmp}/diffy-bench}
# (bench_tools.py fleet: every host the same rows, one in ten with 20 newer versions, one in 97
# with 3 rows of its own) and reused. DuckDB is installed from PyPI (pip install duckdb) when
# python3 cannot import it. diffy saves every record through local-file into a temporary
# configuration directory; the saved run is removed after each run, outside the timing. The
# script reports; it fails only when a command fails (or the two tools disagree on which hosts
# have rare rows), never on timing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/scripts/bench_tools.py"
sizes="1000x1000 10000x1000 100000x100 json:1000x1000"
runs=3
out=""
build=1

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-lib.sh
. "$repo/scripts/bench-lib.sh"
ensure_tool python3 python3
ensure_tool /usr/bin/time time
if ! python3 -c 'import duckdb' 2>/dev/null; then
  echo "== pip install duckdb" >&2
  python3 -m pip install --quiet duckdb >&2
fi

release_build diffy-local
out="${out:-$cache/results/pipeline-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
work="$(mktemp -d "$cache/pipeline-run.XXXXXX")"
trap 'rm -rf "$work"' EXIT

options=(--payload-plugin local-command --option 'local-command.commands=[{"id":"packages","run":"unused"}]')
{
  echo "{\"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"runs\": $runs,"
  echo " \"machine\": \"$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(uname -sr)\","
  echo " \"duckdb\": \"$(python3 -c 'import duckdb; print(duckdb.__version__)')\","
  echo " \"diffy\": \"$(git -C "$repo" rev-parse --short HEAD)\","
  printf ' "sizes": ['
  first=1
  for size in $sizes; do [ $first = 1 ] || printf ', '; printf '"%s"' "${size/:/-}"; first=0; done
  echo ']}'
} >"$out/meta.json"

for size in $sizes; do
  format=text
  case "$size" in json:*) format=json; size="${size#json:}" ;; esac
  hosts="${size%x*}"
  rows="${size#*x}"
  if [ "$format" = json ]; then
    label="json-$size"
    fleet="$cache/fleet-json-v1-h$hosts-r$rows"
    fleet_options=(--format json)
    payload=()
  else
    label="$size"
    fleet="$cache/fleet-v1-h$hosts-r$rows"
    fleet_options=()
    payload=("${options[@]}")
  fi
  if [ ! -f "$fleet.complete" ]; then
    echo "== generating $fleet ($hosts hosts × $rows rows, $format)" >&2
    rm -rf "$fleet"
    python3 "$tools" fleet "$fleet" --hosts "$hosts" --rows "$rows" "${fleet_options[@]}"
    touch "$fleet.complete"
  fi
  python3 "$tools" fleet-info "$fleet" >"$out/fleet-$label.json"
  config="$work/config-$label"
  mkdir -p "$config"
  diffy_command=("$diffy" --config-dir "$config" new analysis "$fleet" --target-plugin evidence-dir
    --collection-plugin evidence-dir "${payload[@]}" --analysis-plugin local-cluster --format json)
  duckdb_command=(python3 "$repo/scripts/duckdb_stacking.py" "$fleet" --threads 2 --format "$format")
  # One untimed run of each: the page cache warm, the plugin's manifest cached, and the answers
  # compared.
  echo "== $label: warm-up and cross-check" >&2
  "${diffy_command[@]}" >"$out/diffy-$label.json"
  "${duckdb_command[@]}" >"$out/duckdb-$label.jsonl"
  python3 "$tools" stacking-check "$out/diffy-$label.json" "$out/duckdb-$label.jsonl"
  rm -rf "$config/data"
  for run in $(seq 1 "$runs"); do
    echo "== $label: run $run of $runs" >&2
    /usr/bin/time -f '%e %M' -o "$out/time-$label-diffy-$run.txt" "${diffy_command[@]}" >/dev/null
    rm -rf "$config/data"
    /usr/bin/time -f '%e %M' -o "$out/time-$label-duckdb-$run.txt" "${duckdb_command[@]}" >/dev/null
  done
done

python3 "$tools" stacking-report "$out"
printf '\ncommand: scripts/bench-pipeline.sh --sizes "%s" --runs %s\nresults: %s\n' "$sizes" "$runs" "$out"
