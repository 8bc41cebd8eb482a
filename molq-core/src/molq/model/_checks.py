"""attrs validators shared by the model's value classes (internal to :mod:`molq.model`)."""

from __future__ import annotations

from typing import Any

from molq.errors import ConfigError


def _positive_int(name: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        if value <= 0:
            raise ConfigError(f"{name} must be at least 1, got {value}")

    return check


def _opt_str(name: str):
    def check(_inst: Any, _attr: Any, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
        if "\n" in value or "\x00" in value:
            raise ConfigError(f"{name} must not contain newlines or NUL bytes: {value!r}")

    return check
