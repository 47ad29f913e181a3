#!/usr/bin/env bash
# SSH fleet benchmark (docs/benchmarks.md): the same five triage commands (diffy-local's default
# set) on the same lab of N real sshd hosts (tests/support/ssh_lab.rs, via the diffy-ssh-lab
# binary), side by side in one hyperfine run:
#
#   diffy          new analysis hosts.ini --target-plugin ssh-inventory --collection-plugin ssh
#                  --analysis-plugin local-cluster --jobs N (collects, saves every record, analyses)
#   ansible-shell  ansible -m shell, one ad-hoc run per command, -f N
#   ansible-raw    ansible -m raw, the same
#   xargs-ssh      xargs -P N, one ssh per host and command (outputs kept apart, as diffy's)
#   xargs-joined   xargs -P N, one ssh per host running the five commands (outputs mixed; a floor)
#
#   scripts/bench-ssh.sh [--hosts 20] [--runs 5] [--warmup 1] [--out DIR] [--no-build]
#
# Every tool gets the lab's ssh_config (key, known_hosts, user root) and connects afresh in every
# run: Ansible's ControlPersist is cut to 3 s and each run is preceded by a 4 s pause, so no
# connection outlives its run. Ansible (ansible-core) is installed with pip into a virtualenv under
# the bench cache when `ansible` is not on PATH. Prints medians and ratios; fails only when a
# command fails, never on timing. Needs root (the lab uses namespaces).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hosts=20
runs=5
warmup=1
out=""
build=1

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
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
ensure_tool ssh openssh-client
ensure_tool /usr/sbin/sshd openssh-server

release_build diffy-local diffy-ssh
if [ "$build" = 1 ]; then
  (cd "$repo" && cargo build --release --quiet -p diffy-e2e --bin diffy-ssh-lab)
fi
lab_bin="$bin/diffy-ssh-lab"
[ -x "$lab_bin" ] || { echo "error: $lab_bin is missing; build with cargo build --release -p diffy-e2e --bin diffy-ssh-lab" >&2; exit 1; }

if command -v ansible >/dev/null 2>&1; then
  ansible="$(command -v ansible)"
else
  venv="$cache/ansible-venv"
  if [ ! -x "$venv/bin/ansible" ]; then
    echo "== installing ansible-core into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet ansible-core
  fi
  ansible="$venv/bin/ansible"
fi

out="${out:-$cache/results/ssh-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
work="$(mktemp -d "$cache/ssh-run.XXXXXX")"

# The lab lives as long as its stdin stays open: closing it (or this script dying) stops it.
echo "== starting a lab of $hosts sshd hosts" >&2
coproc LAB { "$lab_bin" --hosts "$hosts"; }
lab_pid=$LAB_PID
stop_lab() {
  [ -n "${LAB[1]:-}" ] && eval "exec ${LAB[1]}>&-"
  wait "$lab_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap stop_lab EXIT
read -r lab <&"${LAB[0]}" || { echo "error: the lab did not start" >&2; exit 1; }
[ -f "$lab/hosts.ini" ] || { echo "error: the lab did not start: $lab" >&2; exit 1; }

# The five commands, exactly as diffy runs them.
"$diffy" --config-dir "$work/config" plugin info diffy-local --format json >"$work/info.json"
python3 - "$work/info.json" "$work/commands" <<'EOF'
import json, os, sys
info, directory = sys.argv[1:]
component = next(c for c in json.load(open(info))["manifest"]["components"] if c["name"] == "local-command")
os.makedirs(directory, exist_ok=True)
for n, command in enumerate(component["options"][0]["default"], 1):
    with open(os.path.join(directory, f"{n}-{command['id']}"), "w") as f:
        f.write(command["run"])
EOF

cat >"$work/diffy.sh" <<EOF
exec '$diffy' --config-dir '$work/config' new analysis '$lab/hosts.ini' --target-plugin ssh-inventory \\
  --collection-plugin ssh --analysis-plugin local-cluster --option 'ssh.ssh_config=$lab/ssh_config' \\
  --jobs $hosts --format json >/dev/null
EOF
for module in shell raw; do
  cat >"$work/ansible-$module.sh" <<EOF
export ANSIBLE_SSH_ARGS='-o ControlMaster=auto -o ControlPersist=3s' ANSIBLE_LOCALHOST_WARNING=False
export ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 ANSIBLE_NOCOLOR=1
for command in '$work/commands'/*; do
  '$ansible' lab -i '$lab/hosts.ini' -f $hosts -m $module -a "\$(cat "\$command")" >/dev/null
done
EOF
done
cat >"$work/xargs-ssh.sh" <<EOF
for command in '$work/commands'/*; do
  while read -r host; do printf '%s %s\n' "\${host##*:}" "\$command"; done <'$lab/hosts.txt'
done | xargs -P $hosts -n 2 sh -c 'ssh -F "$lab/ssh_config" -o BatchMode=yes -p "\$0" 127.0.0.1 "\$(cat "\$1")" >/dev/null 2>&1 || true'
EOF
cat >"$work/xargs-joined.sh" <<EOF
all="\$(for command in '$work/commands'/*; do cat "\$command"; echo; done)"
cut -d: -f2 '$lab/hosts.txt' | xargs -P $hosts -I{} ssh -F '$lab/ssh_config' -o BatchMode=yes -p {} 127.0.0.1 "\$all" >/dev/null 2>&1 || true
EOF

# Each tool once, so a broken set-up fails here rather than as a fast "result".
for tool in diffy ansible-shell ansible-raw xargs-ssh xargs-joined; do
  bash "$work/$tool.sh" || { echo "error: $tool failed against the lab" >&2; exit 1; }
done

echo "== hyperfine: $hosts hosts, five commands, $runs runs" >&2
hyperfine -N --style basic --warmup "$warmup" --runs "$runs" --prepare 'sleep 4' \
  --export-json "$out/ssh.json" \
  --command-name diffy "bash $work/diffy.sh" \
  --command-name ansible-shell "bash $work/ansible-shell.sh" \
  --command-name ansible-raw "bash $work/ansible-raw.sh" \
  --command-name xargs-ssh "bash $work/xargs-ssh.sh" \
  --command-name xargs-joined "bash $work/xargs-joined.sh" >"$out/hyperfine.txt"

python3 - "$out/ssh.json" "$hosts" "$("$ansible" --version | sed -n 1p)" "$(ssh -V 2>&1)" <<'EOF' | tee "$out/summary.md"
import json, os, statistics, sys
path, hosts, ansible, openssh = sys.argv[1:]
results = {r["command"]: r for r in json.load(open(path))["results"]}
median = {name: statistics.median(r["times"]) for name, r in results.items()}
load = os.getloadavg()[0]
print(f"{hosts} hosts, 5 commands; {ansible}; {openssh}; load average {load:.2f} at the end\n")
print("| tool | median | min–max | diffy against it |")
print("|---|---|---|---|")
for name, r in results.items():
    ratio = median[name] / median["diffy"]
    versus = "—" if name == "diffy" else (
        f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower")
    print(f"| {name} | {median[name]:.2f} s | {min(r['times']):.2f}–{max(r['times']):.2f} s | {versus} |")
print()
print(f"budget: ≥ 4× faster than ansible -m shell: {median['ansible-shell'] / median['diffy']:.2f}×; "
      f"within 1.2× of xargs -P + ssh: {median['diffy'] / median['xargs-ssh']:.2f}× its time")
EOF
echo "(raw results in $out)" >&2
