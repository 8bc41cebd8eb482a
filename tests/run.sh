#!/usr/bin/env bash
# The test command: set everything up (virtualenv, molq distributions, real services such as
# SLURM and sshd where this machine allows) and run the whole test suite.
# Extra arguments go to pytest, e.g. `bash tests/run.sh tests/core -x`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="$(bash tests/bootstrap.sh | tail -n 1)"
if [ -z "${MOLQ_SKIP_SERVICES:-}" ] && [ -f tests/services/up.sh ]; then
    # Real SLURM, sshd, atd: installed and started idempotently.
    bash tests/services/up.sh
    [ -f /var/lib/molq-test/env.sh ] && . /var/lib/molq-test/env.sh
fi
# The slowest tests are listed at the end: where the suite's time goes, run after run.
exec "$python" -m pytest --durations=40 "$@"
