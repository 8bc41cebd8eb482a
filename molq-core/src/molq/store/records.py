"""Row -> record conversion, without SQLAlchemy (and, for :class:`LiteRecord`, without the
model), shared by the SQL store and the read-only SQLite reader."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from molq._states import JobState, sub_state_or_none
from molq.store.schema import JOBS, RECORD_COLUMNS

if TYPE_CHECKING:
    from molq.model import JobRecord

__all__ = ["JOBS_TABLE", "RECORD_COLUMNS", "LiteRecord", "row_to_lite", "row_to_record"]

JOBS_TABLE = JOBS.name
# Columns decoded into another attribute: metadata_json -> metadata, usage_json -> usage.
_JSON_COLUMNS = ("metadata_json", "usage_json")


def _fields(m: Mapping[str, Any]) -> dict[str, Any]:
    present = m.keys()
    data = {name: m[name] if name in present else None for name in RECORD_COLUMNS if name not in _JSON_COLUMNS}
    data["state"] = JobState(data["state"])
    data["sub_state"] = sub_state_or_none(data["sub_state"])
    data["metadata"] = json.loads(m["metadata_json"] or "{}")
    data["usage"] = json.loads(m["usage_json"]) if m["usage_json"] else None
    if data["attempt"] is None:
        data["attempt"] = 1
    if data["command_display"] is None:
        data["command_display"] = ""
    return data


def row_to_record(m: Mapping[str, Any]) -> JobRecord:
    from molq.model import JobRecord

    return JobRecord(**_fields(m))


class LiteRecord:
    """A read-only job record with the attributes of :class:`~molq.model.JobRecord`, for
    printing listings without importing the model."""

    __slots__ = (*(c for c in RECORD_COLUMNS if c not in _JSON_COLUMNS), "metadata", "usage")

    def __init__(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("LiteRecord is read-only")

    def __repr__(self) -> str:
        return f"LiteRecord(job_id={self.job_id!r}, state={self.state.value!r})"  # type: ignore[attr-defined]


def row_to_lite(m: Mapping[str, Any]) -> LiteRecord:
    return LiteRecord(**_fields(m))
