#!/usr/bin/env bash
# Set up molq in .venv and run the quickstart on the embedded default (local scheduler,
# SQLite store under ~/.molq).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$(bash "$root/tests/bootstrap.sh" | tail -n 1)"
exec "$python" "$root/examples/quickstart.py"
