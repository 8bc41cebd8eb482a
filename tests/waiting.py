"""Polling until a condition holds, for tests that watch real schedulers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T], timeout: float = 60.0, interval: float = 1.0) -> T:
    """``check()``'s first true value, or its last value once ``timeout`` seconds have passed."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(interval)


def wait_for(check: Callable[[], T], timeout: float = 30.0, what: str = "the condition", interval: float = 0.1) -> T:
    """``check()``'s first true value; fails the test (naming ``what``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout} s")
        time.sleep(interval)
