# Shared by bench-process.sh and bench-pipeline.sh (sourced, not run). Expects $repo and $build.

# ensure_tool COMMAND DEBIAN_PACKAGE: install the package when the command is missing (as root).
ensure_tool() {
  command -v "$1" >/dev/null 2>&1 && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing $2" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    echo "error: $1 is not installed (Debian package $2)" >&2
    exit 1
  fi
}

# release_build PACKAGE...: build diffy and the plugin packages (unless --no-build), check the
# libraries are there, and set $bin, $diffy and $cache and the environment every benchmark uses.
release_build() {
  # Libraries in group- or world-writable directories are refused by the loader.
  umask 022
  local target="${CARGO_TARGET_DIR:-$repo/target}" package file
  bin="$target/release"
  if [ "$build" = 1 ]; then
    echo "== cargo build --release" >&2
    (cd "$repo" && cargo build --release --quiet -p diffy $(for package in "$@"; do printf -- '-p %s ' "$package"; done))
  fi
  diffy="$bin/diffy"
  for package in "$@"; do
    file="$bin/lib${package//-/_}.so"
    [ -f "$file" ] || { echo "error: $file is missing; build with cargo build --release" >&2; exit 1; }
  done
  [ -f "$diffy" ] || { echo "error: $diffy is missing; build with cargo build --release" >&2; exit 1; }
  export DIFFY_BUNDLED_PLUGINS_DIR="$bin"
  unset DIFFY_CONFIG_DIR RUST_LOG RUST_BACKTRACE LD_DEBUG
  cache="${DIFFY_BENCH_CACHE:-${TMPDIR:-/tmp}/diffy-bench}"
  mkdir -p "$cache"
}

# nushell with its `inc` plugin registered, cached under $cache/nushell: sets $nu and $nu_plugins.
# Returns 1 (and says why) when either cannot be had.
ensure_nushell() {
  local dir="$cache/nushell" version="0.115.1"
  nu_plugins="$dir/plugins.msgpackz"
  # npm's node_modules/.bin/nu is a Node.js launcher (≈ 150 ms of Node start-up per run); time
  # the native nu binary the package ships instead.
  nu="$(find "$dir/node_modules/@nushell" -path '*/bin/nu' -type f 2>/dev/null | head -n 1)"
  if [ -z "$nu" ]; then
    if ! command -v npm >/dev/null 2>&1; then echo "note: no npm: nushell is not measured" >&2; return 1; fi
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent "nushell@$version" >/dev/null 2>&1) || { echo "note: npm could not install nushell" >&2; return 1; }
    nu="$(find "$dir/node_modules/@nushell" -path '*/bin/nu' -type f | head -n 1)"
    [ -x "$nu" ] || { echo "note: the nushell package has no native nu binary for this machine" >&2; return 1; }
  fi
  if [ ! -x "$dir/bin/nu_plugin_inc" ]; then
    echo "== building nu_plugin_inc $version (once; a few minutes)" >&2
    cargo install --quiet --locked --root "$dir" "nu_plugin_inc@$version" >&2 || { echo "note: nu_plugin_inc did not build" >&2; return 1; }
  fi
  if [ ! -f "$nu_plugins" ]; then
    "$nu" --plugin-config "$nu_plugins" -c "plugin add '$dir/bin/nu_plugin_inc'" >/dev/null
  fi
  "$nu" --plugin-config "$nu_plugins" -c '1 | inc' >/dev/null
}
