#!/usr/bin/env bash
# Build the sdist and the wheel of every molq distribution (every molq-*/pyproject.toml, and the
# workspace root's `molq`, which depends on all of them) into one folder, default dist/.
# Usage: bash tests/build_dists.sh [OUTDIR]
#
# Each distribution is built with `python -m build`: the sdist first, then the wheel from that
# sdist, in an isolated environment with the build backend from PyPI. Building the wheel from
# the sdist proves that the sdist is complete. MOLQ_BUILD_PYTHON names an interpreter that has
# `build` installed; without it, the project's .venv (tests/bootstrap.sh) is used.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
py="${MOLQ_BUILD_PYTHON:-}"
if [ -z "$py" ]; then
    py="$(bash "$root/tests/bootstrap.sh" | tail -n 1)"
fi
"$py" -m build --version >/dev/null

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
pids=()
names=()
for project in "$root"/ "$root"/molq-*/; do
    if [ "$project" = "$root/" ]; then name=molq; else name="$(basename "$project")"; fi
    # Remove this distribution's previous artifacts so that dist/ never holds two versions.
    rm -f "$out/${name//-/_}"-*.whl "$out/${name//-/_}"-*.tar.gz
    # The builds are independent; running them side by side halves the wall time.
    "$py" -m build --outdir "$out" "$project" >"$logs/$name.log" 2>&1 &
    pids+=("$!")
    names+=("$name")
done
failed=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "build of ${names[$i]} failed:" >&2
        cat "$logs/${names[$i]}.log" >&2
        failed=1
    fi
done
[ "$failed" = 0 ] || exit 1
ls -1 "$out"
