#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install every molq
# distribution into it in editable mode, plus the test tools. Idempotent; prints the
# interpreter path on its last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${MOLQ_PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    if ! "$py" -m venv .venv >/dev/null 2>&1; then
        # Debian splits venv/ensurepip into its own package.
        rm -rf .venv
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        else
            echo "python3 -m venv failed; install python3-venv" >&2; exit 1
        fi
        "$py" -m venv .venv
    fi
fi
stamp=.venv/.molq-installed
want="$(cat molq-*/pyproject.toml examples/*/pyproject.toml tests/requirements.txt docs/requirements.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q \
        -e ./molq-core -e ./molq-slurm -e ./molq-pbs -e ./molq-lsf -e ./molq-ssh \
        -e ./examples/molq-at -e ./examples/molexp-molq \
        -r tests/requirements.txt -r docs/requirements.txt
    echo "$want" > "$stamp"
fi
# The linter shellcheck checks the local scheduler's shell scripts (tests/core/test_local_queue.py); as root
# with apt-get it is installed like the services' Debian packages (once; a failure only warns,
# and the test then skips, or fails under CI=true).
if ! command -v shellcheck >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # shellcheck disable=SC1091 # sourced from the repository root
    ( _svc_tag=bootstrap; . tests/services/lib.sh; apt_ensure shellcheck ) >&2 ||
        echo "bootstrap: could not install shellcheck" >&2
fi
echo "$root/.venv/bin/python"
