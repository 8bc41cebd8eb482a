"""The store conformance kit against the SQL store on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import pytest
from molq.testing.store import StoreConformance


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store_url(self, sqlite_url: str) -> str:
        return sqlite_url


@pytest.mark.postgres
class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store_url(self, pg_url: str) -> str:
        return pg_url
