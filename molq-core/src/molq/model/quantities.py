"""Quantities: :class:`Memory` and :class:`Duration`, parsed from what users write and rendered
in each scheduler's units."""

from __future__ import annotations

import math
import re
from typing import Any

import attrs

from molq.errors import ConfigError

_MEMORY_UNITS = {
    "": None,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _render_binary(nbytes: int, units: list[tuple[str, int]], smallest: tuple[str, int]) -> str:
    """Render ``nbytes`` in the largest unit that divides it exactly, else ceil in ``smallest``."""
    for suffix, size in units:
        if nbytes % size == 0:
            return f"{nbytes // size}{suffix}"
    suffix, size = smallest
    return f"{math.ceil(nbytes / size)}{suffix}"


@attrs.frozen(order=True)
class Memory:
    """An amount of memory, stored as bytes (binary units: ``1G`` is 1024**3 bytes).

    >>> Memory.parse("32G") == Memory.gb(32)
    True
    >>> Memory.parse("1536MB").to_slurm()
    '1536M'
    """

    bytes: int = attrs.field()

    @bytes.validator
    def _check(self, _attr: Any, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"memory must be an integer number of bytes, got {value!r}")
        if value <= 0:
            raise ConfigError(f"memory must be positive, got {value} bytes")

    @classmethod
    def kb(cls, n: float) -> Memory:
        return cls(math.ceil(n * 1024))

    @classmethod
    def mb(cls, n: float) -> Memory:
        return cls(math.ceil(n * 1024**2))

    @classmethod
    def gb(cls, n: float) -> Memory:
        return cls(math.ceil(n * 1024**3))

    @classmethod
    def tb(cls, n: float) -> Memory:
        return cls(math.ceil(n * 1024**4))

    @classmethod
    def parse(cls, text: str | int | Memory) -> Memory:
        """Parse ``"32G"``, ``"512MB"``, ``"1.5GiB"``, ``"800K"``. A bare number is rejected
        because schedulers disagree on its unit."""
        if isinstance(text, Memory):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(text)
        if not isinstance(text, str):
            raise ConfigError(f"memory must be a string such as '4G', got {text!r}")
        match = _MEMORY_RE.match(text)
        if not match:
            raise ConfigError(f"cannot parse memory {text!r}; write e.g. '512M', '4G' or '1.5GB'")
        number, unit = match.groups()
        unit_l = unit.lower()
        if unit_l not in _MEMORY_UNITS:
            raise ConfigError(
                f"unknown memory unit {unit!r} in {text!r}; use K, M, G or T (optionally with B)"
            )
        size = _MEMORY_UNITS[unit_l]
        if size is None:
            raise ConfigError(
                f"memory {text!r} has no unit; write e.g. '{number}M' or '{number}G'"
            )
        value = math.ceil(float(number) * size)
        if value <= 0:
            raise ConfigError(f"memory must be positive, got {text!r}")
        return cls(value)

    def to_slurm(self) -> str:
        """``--mem`` value: the largest of T/G/M that is exact, else K (SLURM's smallest unit)."""
        return _render_binary(
            self.bytes, [("T", 1024**4), ("G", 1024**3), ("M", 1024**2)], ("K", 1024)
        )

    def to_pbs(self) -> str:
        """PBS size: ``32gb``, ``1536mb``, ``800kb`` (lower-case units, as PBS documents them)."""
        return _render_binary(
            self.bytes,
            [("tb", 1024**4), ("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)],
            ("kb", 1024),
        )

    def to_lsf_kb(self) -> int:
        """Kilobytes, rounded up (LSF's default ``LSF_UNIT_FOR_LIMITS``)."""
        return math.ceil(self.bytes / 1024)

    def to_unit(self, unit: str) -> int:
        """Whole ``unit`` s (``KB``, ``MB``, ``GB``, ``TB``), rounded up."""
        size = _MEMORY_UNITS.get(unit.lower())
        if not size:
            raise ConfigError(f"unknown memory unit {unit!r}; use KB, MB, GB or TB")
        return math.ceil(self.bytes / size)

    def __str__(self) -> str:
        return self.to_slurm()


_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)", re.IGNORECASE)
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


@attrs.frozen(order=True)
class Duration:
    """A length of time, stored as whole seconds.

    >>> Duration.parse("2h30m").seconds
    9000
    >>> Duration.parse("1-02:00:00").to_slurm()
    '1-02:00:00'
    """

    seconds: int = attrs.field()

    @seconds.validator
    def _check(self, _attr: Any, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"duration must be an integer number of seconds, got {value!r}")
        if value <= 0:
            raise ConfigError(f"duration must be positive, got {value} seconds")

    @classmethod
    def minutes(cls, n: float) -> Duration:
        return cls(math.ceil(n * 60))

    @classmethod
    def hours(cls, n: float) -> Duration:
        return cls(math.ceil(n * 3600))

    @classmethod
    def parse(cls, text: str | int | Duration) -> Duration:
        """Parse ``"2h30m"``, ``"90s"``, ``"1d"``, ``"04:00:00"``, ``"30:00"`` (MM:SS) or
        SLURM's ``"1-02:00:00"``. A bare number is rejected because its unit is ambiguous."""
        if isinstance(text, Duration):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            return cls(text)
        if not isinstance(text, str):
            raise ConfigError(f"duration must be a string such as '2h', got {text!r}")
        s = text.strip()
        if not s:
            raise ConfigError("duration is empty")
        if re.fullmatch(r"\d+(\.\d+)?", s):
            raise ConfigError(
                f"duration {text!r} has no unit; write e.g. '{s}m', '{s}h' or 'HH:MM:SS'"
            )
        clock = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
        if clock and (":" in s or "-" in s):
            days, a, b, c = clock.groups()
            parts = [int(x) for x in (a, b, c) if x is not None]
            # Every field after the leading one is a clock field and must be in range. sbatch
            # itself would turn '10:70' into 670 s, but a field over 59 is far more likely a typo
            # than a wish, and PBS and LSF spell limits differently: refuse it here.
            names: tuple[str, ...] = ("hours", "minutes", "seconds")
            if days is not None:
                bounded = list(zip(names, parts, (23, 59, 59)))
            else:
                names = names[-len(parts):]
                bounded = list(zip(names[1:], parts[1:], (59, 59)))
            for label, value, limit in bounded:
                if value > limit:
                    raise ConfigError(f"duration {text!r}: {label} must be at most {limit}, got {value}")
            if days is not None:
                # SLURM: days-hours[:minutes[:seconds]]
                parts += [0] * (3 - len(parts))
                h, m, sec = parts
                total = int(days) * 86400 + h * 3600 + m * 60 + sec
            elif len(parts) == 3:
                h, m, sec = parts
                total = h * 3600 + m * 60 + sec
            else:
                m, sec = parts
                total = m * 60 + sec
            if total <= 0:
                raise ConfigError(f"duration must be positive, got {text!r}")
            return cls(total)
        pos = 0
        total_f = 0.0
        for match in _DURATION_PART_RE.finditer(s):
            if s[pos : match.start()].strip():
                break
            total_f += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
            pos = match.end()
        if pos == 0 or s[pos:].strip():
            raise ConfigError(
                f"cannot parse duration {text!r}; write e.g. '90s', '2h30m', '1d' or '04:00:00'"
            )
        total = math.ceil(total_f)
        if total <= 0:
            raise ConfigError(f"duration must be positive, got {text!r}")
        return cls(total)

    def _hms(self) -> tuple[int, int, int]:
        h, rem = divmod(self.seconds, 3600)
        m, s = divmod(rem, 60)
        return h, m, s

    def to_slurm(self) -> str:
        """``--time`` value: ``HH:MM:SS`` or ``D-HH:MM:SS`` from one day on."""
        d, rem = divmod(self.seconds, 86400)
        h, rem = divmod(rem, 3600)
        m, s = divmod(rem, 60)
        if d:
            return f"{d}-{h:02d}:{m:02d}:{s:02d}"
        return f"{h:02d}:{m:02d}:{s:02d}"

    def to_pbs(self) -> str:
        """``walltime`` value: ``HH:MM:SS`` (hours may exceed 24)."""
        h, m, s = self._hms()
        return f"{h:02d}:{m:02d}:{s:02d}"

    def to_lsf_minutes(self) -> int:
        """Whole minutes, rounded up (LSF ``-W`` takes minutes)."""
        return math.ceil(self.seconds / 60)

    def __str__(self) -> str:
        return self.to_slurm()
