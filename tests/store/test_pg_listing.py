"""`molq list` on a PostgreSQL store: read with psycopg alone (no SQLAlchemy, no model), the
same records as the full store, and every failure one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa
from molq.model import JobState
from molq.store import JobStore
from molq.store.lite import list_jobs, lite_location, store_absent
from molq.store.records import RECORD_COLUMNS

pytestmark = pytest.mark.postgres

# `molq ARGS` in this interpreter; says on stderr whether SQLAlchemy was imported.
RUN_CLI = textwrap.dedent("""
    import sys
    {prelude}
    from molq.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    print("sqlalchemy imported:", "sqlalchemy" in sys.modules, file=sys.stderr)
    raise SystemExit(code)
""")


def _molq(url: str, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MOLQ_STORE_URL=url)
    proc = subprocess.run([sys.executable, "-c", RUN_CLI.format(prelude=prelude), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _fill(url: str) -> None:
    store = JobStore(url)
    for i in range(6):
        store.insert_job({"job_id": f"job{i}", "cluster_name": "pg", "scheduler": "local", "command_type": "argv",
                          "command_display": f"echo {i} ✓", "metadata_json": f'{{"i": "{i}"}}'})
        store.transition("pg", f"job{i}", JobState.CREATED, JobState.SUBMITTED, scheduler_job_id=str(100 + i))
        store.transition("pg", f"job{i}", JobState.SUBMITTED, JobState.FAILED if i % 2 else JobState.SUCCEEDED,
                         exit_code=i % 2, finished_at=1000.5 + i, failure_reason="exit 1" if i % 2 else None)
    store.close()


def test_the_light_reader_gives_what_the_full_store_gives(pg_url):
    _fill(pg_url)
    location = lite_location(pg_url)
    assert location is not None and location.startswith("postgresql://") and not store_absent(location)
    light = list_jobs(location, None, include_terminal=True, lite=True)
    store = JobStore(pg_url)
    full = store.list_jobs(None, include_terminal=True, newest_first=True)
    store.close()
    assert type(light[0]).__name__ == "LiteRecord" and len(light) == len(full) == 6
    for a, b in zip(light, full):
        for name in RECORD_COLUMNS:
            if name not in ("metadata_json", "usage_json"):  # decoded into .metadata / .usage
                assert getattr(a, name) == getattr(b, name), name
        assert a.metadata == b.metadata
        assert (a.usage is None) == (b.usage is None)
    failed = list_jobs(location, "pg", states=[JobState.FAILED], lite=True)
    assert [r.job_id for r in failed] == ["job5", "job3", "job1"]


def test_molq_list_reads_postgres_without_sqlalchemy(pg_url):
    _fill(pg_url)
    proc = _molq(pg_url, "list", "-a")
    assert proc.returncode == 0, proc.stderr
    assert "sqlalchemy imported: False" in proc.stderr
    assert sorted(line.split()[0] for line in proc.stdout.splitlines()[1:] if line.startswith("job")) == \
        [f"job{i}" for i in range(6)]


def test_a_database_molq_never_used_lists_nothing_and_stays_empty(pg_url):
    proc = _molq(pg_url, "list", "-a")
    assert proc.returncode == 0 and "no jobs" in proc.stdout + proc.stderr, proc
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()


def test_a_store_the_light_reader_cannot_read_goes_through_the_full_store(pg_url):
    _fill(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE molq_jobs DROP COLUMN failure_reason")
    engine.dispose()
    proc = _molq(pg_url, "list", "-a")
    assert proc.returncode == 2
    assert proc.stderr.startswith("molq: error: ") and "failure_reason" in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[0].startswith("molq: error: ") and len(proc.stderr.splitlines()) == 2


def test_wrong_credentials_are_one_line(pg_server_url):
    url = sa.engine.make_url(pg_server_url).set(password="not-the-password").render_as_string(hide_password=False)
    for args in (["list"], ["show", "abc"], ["store", "check"]):
        proc = _molq(url, *args)
        lines = proc.stderr.splitlines()
        assert proc.returncode in (1, 2), (args, proc)
        out = proc.stdout + proc.stderr
        assert "password authentication failed" in out and "not-the-password" not in out, (args, out)
        if proc.returncode == 2:
            assert len(lines) == 2 and lines[0].startswith("molq: error: "), (args, proc.stderr)


def test_missing_driver_is_one_line_saying_what_to_install(pg_url):
    prelude = 'sys.modules["psycopg"] = None  # as if molq-core[postgresql] were not installed'
    for args in (["list"], ["show", "abc"]):
        proc = _molq(pg_url.replace("postgresql+psycopg://", "postgresql://"), *args, prelude=prelude)
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2, (args, proc)
        assert len(lines) == 2 and lines[0].startswith("molq: error: "), (args, proc.stderr)
        assert "pip install 'molq-core[postgresql]'" in lines[0] and "molqtest@" not in lines[0], lines[0]
