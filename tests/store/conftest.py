"""Fixtures for the store tests: a fresh SQLite file, or a fresh schema on the real PostgreSQL
server of tests/services/postgres.sh (``MOLQ_TEST_PG_URL``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_URL = os.environ.get("MOLQ_TEST_PG_URL")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the real PostgreSQL test server (tests/services/postgres.sh)")


def _pg_reachable(url: str) -> bool:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        finally:
            engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The test server's URL; skips (fails with CI=true) when it is not running."""
    if not (PG_URL and _pg_reachable(PG_URL)):
        # the rule of tests/conftest.py require_service: skip on a developer machine, fail in CI
        what = "the PostgreSQL test server (MOLQ_TEST_PG_URL, tests/services/postgres.sh)"
        if IN_CI:
            pytest.fail(f"{what} is required in CI (CI=true) but is not available")
        pytest.skip(f"{what} is not available")
    return PG_URL


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A store URL on a schema of its own, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(pg_server_url, pool_pre_ping=True)  # survives a server restart by a test
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_server_url else "?"
    yield f"{pg_server_url}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/store/jobs.db"
