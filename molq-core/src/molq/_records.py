"""Former home of the row -> record conversion, now :mod:`molq.store.records` and
:mod:`molq.store.schema` (kept so existing imports go on working)."""

from molq.store.records import JOBS_TABLE, RECORD_COLUMNS, LiteRecord, row_to_lite, row_to_record

__all__ = ["JOBS_TABLE", "RECORD_COLUMNS", "LiteRecord", "row_to_lite", "row_to_record"]
