#!/usr/bin/env bash
# Rebuild tests/compat/future/api from today's plugin-api/ plus future.patch (the additions marked
# FUTURE:). Run it whenever plugin-api/ changes; then set future/api/Cargo.toml's version to the
# release after plugin-api's and its dependencies to plugin-api's (README.md says why).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rm -rf "$here/future/api/src"
cp -r "$here/../../plugin-api/src" "$here/future/api/src"
(cd "$here/future/api" && patch -p1 --no-backup-if-mismatch < "$here/future.patch")
(cd "$here/future" && cargo fmt --all)
echo "refreshed $here/future/api from plugin-api/ and future.patch"
