#!/usr/bin/env bash
# Whole-process benchmark (docs/architecture.md#performance-budgets, docs/benchmarks.md): the release `diffy` with 0, 1, 100 and
# 1,000 registered plugins, each a distinct plugin library really installed with `diffy plugin
# install` (diffy-sweeten, plus copies of the fixture plugin patched into distinct plugins).
# Times `diffy --version`, `diffy help`, `diffy plugin list` and `diffy sweeten count` side by
# side in one hyperfine invocation (repeated --rounds times, so that a change in the machine's load
# hits every command alike; medians are over all rounds), counts the plugin libraries each command
# opens (LD_DEBUG=files), and collects the load and activation times `diffy -v sweeten count` logs.
#
#   scripts/bench-process.sh [--sizes "0 1 100 1000"] [--runs 20] [--rounds 3] [--warmup 3]
#                            [--out DIR] [--no-build] [--no-nushell]
#
# Configuration directories are kept under ${DIFFY_BENCH_CACHE:-${TMPDIR:-/tmp}/diffy-bench},
# keyed on the built binary and libraries, so the 1,000 installs happen once per build. The
# script reports; it fails only when a command fails, never on timing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/scripts/bench_tools.py"
sizes="0 1 100 1000"
runs=20
rounds=3
warmup=3
out=""
build=1
nushell=1

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-nushell) nushell=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# shellcheck source=scripts/bench-lib.sh
. "$repo/scripts/bench-lib.sh"
ensure_tool hyperfine hyperfine
ensure_tool python3 python3

release_build diffy-sweeten diffy-local diffy-ssh diffy-fixture
key="$(stat -c '%n %s %Y' "$diffy" "$bin/libdiffy_sweeten.so" "$bin/libdiffy_fixture.so" "$bin/libdiffy_local.so" \
  | sha256sum | cut -c1-16)"
root="$cache/process-$key"
# Configurations made for other builds are stale (their verification records name another binary).
find "$cache" -maxdepth 1 -name 'process-*' ! -name "process-$key" -exec rm -rf {} +
mkdir -p "$root"
out="${out:-$cache/results/process-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

# A configuration directory with N registered plugins: diffy-sweeten and N-1 fixture copies.
setup() {
  local n="$1" dir="$root/n$1"
  if [ -f "$dir/complete" ]; then return; fi
  rm -rf "$dir"
  mkdir -p "$dir/config"
  echo "== installing $n plugins into $dir/config" >&2
  if [ "$n" -ge 1 ]; then
    "$diffy" --config-dir "$dir/config" plugin install "$bin/libdiffy_sweeten.so" >/dev/null
  fi
  if [ "$n" -ge 2 ]; then
    python3 "$tools" patch "$bin/libdiffy_fixture.so" "$root/libs" "$((n - 1))" >/dev/null
    local i name
    for ((i = 1; i < n; i++)); do
      printf -v name 'diffy-bench-%06d' "$i"
      "$diffy" --config-dir "$dir/config" plugin install "$root/libs/$name/lib${name//-/_}.so" >/dev/null
      if ((i % 100 == 0)); then echo "   $i/$((n - 1))" >&2; fi
    done
  fi
  local registered
  registered="$(python3 "$tools" count-registry "$dir/config")"
  if [ "$registered" != "$n" ]; then
    echo "error: $dir/config registers $registered plugins, not $n" >&2
    exit 1
  fi
  touch "$dir/complete"
}

for n in $sizes; do setup "$n"; done

# --version and the plugin command first, so the two comparisons that budgets rest on are timed
# close together; plugin list (slow with many plugins) last.
commands=("--version" "sweeten count" "help" "plugin list")
plugin_command="sweeten count"
args=()
for command in "${commands[@]}"; do
  for n in $sizes; do
    if [ "$n" = 0 ] && [ "$command" = "$plugin_command" ]; then continue; fi
    args+=(--command-name "n=$n $command" "'$diffy' --config-dir '$root/n$n/config' $command")
  done
done
# The same plugin command with the plugin isolated in its sandboxed runner (name as in
# bench_tools.py's ISOLATED_COMMAND).
if [[ " $sizes " == *" 1 "* ]]; then
  args+=(--command-name "isolated: diffy --isolate-plugins sweeten count (1 plugin)"
    "'$diffy' --config-dir '$root/n1/config' --isolate-plugins sweeten count")
fi
# nushell's own plugin call, the peer the budgets name: `nu` from npm and nu_plugin_inc from
# crates.io, both cached (the plugin takes minutes to build the first time). --no-nushell skips it.
if [ "$nushell" = 1 ] && ensure_nushell; then
  args+=(--command-name "nu -c '1 | inc'" "'$nu' --plugin-config '$nu_plugins' -c '1 | inc'")
fi

for ((round = 1; round <= rounds; round++)); do
  echo "== hyperfine round $round/$rounds: ${#commands[@]} commands × sizes $sizes, $runs runs each" >&2
  hyperfine -N --style basic --warmup "$warmup" --runs "$runs" \
    --export-json "$out/process-round$round.json" "${args[@]}" >"$out/hyperfine-round$round.txt"
done

echo "== counting the plugin libraries each command opens" >&2
: >"$out/libraries.tsv"
for n in $sizes; do
  for command in "${commands[@]}"; do
    if [ "$n" = 0 ] && [ "$command" = "$plugin_command" ]; then continue; fi
    # shellcheck disable=SC2086 # the command's words are split on purpose
    opened="$(LD_DEBUG=files "$diffy" --config-dir "$root/n$n/config" $command 2>&1 >/dev/null \
      | grep 'calling init:' | grep -cE 'diffy_|/proc/self/fd/' || true)"
    printf '%s\t%s\t%s\n' "$n" "$command" "$opened" >>"$out/libraries.tsv"
  done
done

echo "== load and activation times logged by diffy -v $plugin_command" >&2
: >"$out/load-activate.tsv"
for n in $sizes; do
  if [ "$n" = 0 ]; then continue; fi
  for ((i = 0; i < runs; i++)); do
    # shellcheck disable=SC2086
    log="$("$diffy" --config-dir "$root/n$n/config" -v $plugin_command 2>&1 >/dev/null)"
    load_us="$(sed -n 's/.*loaded plugin library.* total_us=\([0-9]*\).*/\1/p' <<<"$log")"
    activate_us="$(sed -n 's/.*activated component.* activate_us=\([0-9]*\).*/\1/p' <<<"$log")"
    if [ -n "$load_us" ] && [ -n "$activate_us" ]; then
      printf '%s\t%s\t%s\n' "$n" "$load_us" "$activate_us" >>"$out/load-activate.tsv"
    fi
  done
done

python3 - "$out/meta.json" "$sizes" "$runs" "$rounds" "$warmup" "$plugin_command" "${commands[@]}" <<'EOF'
import json, os, platform, subprocess, sys
path, sizes, runs, rounds, warmup, plugin_command, *commands = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
meta = {
    "date": subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True, text=True).stdout.strip(),
    "machine": f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, load average {os.getloadavg()[0]:.2f} at the end",
    "sizes": [int(s) for s in sizes.split()],
    "runs": int(runs),
    "rounds": int(rounds),
    "warmup": int(warmup),
    "commands": commands,
    "plugin_command": plugin_command,
}
json.dump(meta, open(path, "w"), indent=2)
EOF
python3 "$tools" process-report "$out"
echo "(raw results in $out)" >&2
