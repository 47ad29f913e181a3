#!/usr/bin/env bash
# Pipeline benchmark (docs/architecture.md#performance-budgets, docs/benchmarks.md): `diffy new analysis` with the evidence-dir
# target and collection over generated fleets of N hosts × 1,000 rows, for the local-cluster and
# local-simple analyses (local-simple against a baseline taken first). A text fleet holds
# packages.txt, replayed with the local-command payload; a json fleet holds packages.json as
# osqueryi --json writes it, read with no options (the evidence payload). Reports the median wall
# time (hyperfine -N, warm page cache), the peak RSS of one more run (/usr/bin/time -v), also as
# a multiple of the evidence's size, rows per second and how the time grows with the fleet.
#
#   scripts/bench-pipeline.sh [--sizes "100 1000 10000"] [--rows 1000] [--runs 3] [--warmup 1]
#                             [--analyses "local-cluster local-simple"] [--fleets "text json"]
#                             [--out DIR] [--no-build]
#
# Fleets are generated once under ${DIFFY_BENCH_CACHE:-${TMPDIR:-/tmp}/diffy-bench} (10,000
# hosts × 1,000 rows is about 600 MB) and reused. Every run saves each record through the
# local-file persistence into a temporary configuration directory; between runs the saved records
# are moved aside, not deleted (ext4 makes the file creations that follow a deletion slower), and
# everything is removed at the end (about 7 GB at the largest size). The script reports; it fails
# only when a command fails, never on timing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/scripts/bench_tools.py"
sizes="100 1000 10000"
rows=1000
runs=3
warmup=1
analyses="local-cluster local-simple"
fleets="text json"
out=""
build=1

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes="$2"; shift 2 ;;
    --rows) rows="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --analyses) analyses="$2"; shift 2 ;;
    --fleets) fleets="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-lib.sh
. "$repo/scripts/bench-lib.sh"
ensure_tool hyperfine hyperfine
ensure_tool python3 python3
ensure_tool /usr/bin/time time

release_build diffy-local diffy-ssh
out="${out:-$cache/results/pipeline-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
work="$(mktemp -d "$cache/pipeline-run.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The options of each fleet, the same for baseline and analysis: the text fleet's one command,
# "packages", replayed with local-command; the json fleet needs none (the evidence payload).
text_options=(--payload-plugin local-command --option 'local-command.commands=[{"id":"packages","run":"unused"}]')
json_options=()

declare -A baselines=()
for n in $sizes; do
  hyperfine_args=()
  prepare="python3 $tools stash $work/trash"
  for kind in $fleets; do
    # The text fleet keeps the names it had before there were other fleets.
    if [ "$kind" = text ]; then tag=""; fleet="$cache/fleet-v1-h$n-r$rows"; else tag="-$kind"; fleet="$cache/fleet-$kind-v1-h$n-r$rows"; fi
    if [ ! -f "$fleet.complete" ]; then
      echo "== generating $fleet ($n hosts × $rows rows, $kind)" >&2
      rm -rf "$fleet"
      python3 "$tools" fleet "$fleet" --hosts "$n" --rows "$rows" --format "$kind"
      touch "$fleet.complete"
    fi
    python3 "$tools" fleet-info "$fleet" >"$out/fleet-$n$tag.json"
    declare -n fleet_options="${kind}_options"
    for analysis in $analyses; do
      config="$work/$n$tag-$analysis"
      mkdir -p "$config"
      if [ "$analysis" = local-simple ]; then
        echo "== baseline for $n hosts ($kind)" >&2
        start=$(date +%s.%N)
        "$diffy" --config-dir "$config" new baseline "$fleet" --target-plugin evidence-dir \
          --collection-plugin evidence-dir "${fleet_options[@]}" >/dev/null 2>"$out/baseline-$n$tag.txt"
        baselines[$n$tag]="$(python3 -c "print($(date +%s.%N) - $start)")"
      fi
      data="$config/data/diffy-local"
      prepare+=" $data/records $data/report"
      quoted=""
      for option in "${fleet_options[@]}"; do quoted+=" $(printf '%q' "$option")"; done
      hyperfine_args+=(--command-name "$analysis${tag//-/ } $n hosts"
        "'$diffy' --config-dir '$config' new analysis '$fleet' --target-plugin evidence-dir --collection-plugin evidence-dir$quoted --analysis-plugin $analysis --format json")
    done
    unset -n fleet_options
  done

  echo "== hyperfine: new analysis over $n hosts ($analyses; $fleets fleets)" >&2
  hyperfine -N --style basic --warmup "$warmup" --runs "$runs" --prepare "$prepare" \
    --export-json "$out/pipeline-$n.json" "${hyperfine_args[@]}" >"$out/hyperfine-$n.txt"

  for kind in $fleets; do
    if [ "$kind" = text ]; then tag=""; fleet="$cache/fleet-v1-h$n-r$rows"; else tag="-$kind"; fleet="$cache/fleet-$kind-v1-h$n-r$rows"; fi
    declare -n fleet_options="${kind}_options"
    for analysis in $analyses; do
      config="$work/$n$tag-$analysis"
      python3 "$tools" stash "$work/trash" "$config/data/diffy-local/records" "$config/data/diffy-local/report"
      echo "== peak memory: $analysis over $n hosts ($kind)" >&2
      /usr/bin/time -v "$diffy" --config-dir "$config" new analysis "$fleet" --target-plugin evidence-dir \
        --collection-plugin evidence-dir "${fleet_options[@]}" --analysis-plugin "$analysis" --format json \
        >/dev/null 2>"$out/rss-$n$tag-$analysis.txt"
    done
    unset -n fleet_options
  done
done
echo "== removing the saved records" >&2
rm -rf "$work"

baseline_json="{"
for n in "${!baselines[@]}"; do baseline_json+="\"$n\": ${baselines[$n]},"; done
baseline_json="${baseline_json%,}}"
python3 - "$out/meta.json" "$sizes" "$rows" "$runs" "$warmup" "$analyses" "$fleets" "$baseline_json" <<'EOF'
import json, os, platform, subprocess, sys
path, sizes, rows, runs, warmup, analyses, fleets, baselines = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
meta = {
    "date": subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True, text=True).stdout.strip(),
    "machine": f"{os.cpu_count()} cores ({cpu}), {mem} MB RAM, {platform.system()} {platform.release()}, load average {os.getloadavg()[0]:.2f} at the end",
    "sizes": [int(s) for s in sizes.split()],
    "rows": int(rows),
    "runs": int(runs),
    "warmup": int(warmup),
    "analyses": analyses.split(),
    "fleets": fleets.split(),
    "baselines": json.loads(baselines),
}
json.dump(meta, open(path, "w"), indent=2)
EOF
python3 "$tools" pipeline-report "$out"
echo "(raw results in $out)" >&2
