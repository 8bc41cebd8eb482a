"""An array's usage is its tasks' together (molq.usage.combine_usage, applied by
molq.evidence.aggregate_parts on every backend)."""

from __future__ import annotations

import pytest
from molq import JobState
from molq.evidence import aggregate_parts
from molq.model import SchedulerStatus
from molq.usage import Usage, combine_usage, usage_lines

MiB = 1 << 20


def _task(cpu: float, elapsed: float, start: float, rss: int | None, gpus: int | None = None) -> SchedulerStatus:
    usage = Usage(elapsed_seconds=elapsed, cpu_seconds=cpu, cpus=2, max_rss_bytes=rss,
                  requested_memory_bytes=512 * MiB, gpus=gpus, nodes=f"n{int(start) % 2}")
    return SchedulerStatus(JobState.SUCCEEDED, "COMPLETED", exit_code=0, started_at=start,
                           finished_at=start + elapsed, usage=usage)


def test_sums_cpu_and_allocation_spans_wall_time_and_takes_the_largest_task_memory() -> None:
    # Two tasks one after the other, then one alongside the second.
    parts = [("1", _task(10, 20, 100, 100 * MiB)), ("2", _task(30, 40, 120, 300 * MiB)),
             ("3", _task(5, 10, 121, None))]
    usage = aggregate_parts(parts).usage
    assert usage is not None
    assert usage.cpu_seconds == 45 and usage.core_seconds == 2 * (20 + 40 + 10)
    assert usage.elapsed_seconds == 160 - 100  # first start to last end
    assert usage.cpus == 2 and usage.max_rss_bytes == 300 * MiB and usage.requested_memory_bytes == 512 * MiB
    assert usage.cpu_efficiency == pytest.approx(45 / 140)
    assert usage.core_hours == pytest.approx(140 / 3600)
    assert usage.memory_efficiency == pytest.approx(300 / 512)
    assert usage.nodes == "n0,n1"
    assert dict(usage_lines(usage))["CPU efficiency"] == "32.1% of 00:02:20 core-walltime"
    assert Usage.from_dict(usage.to_dict()) == usage  # stored and read back whole


def test_gpu_hours_are_summed_over_tasks() -> None:
    usage = combine_usage([(_task(1, 3600, 0, None, gpus=1).usage, 0.0, 3600.0),
                           (_task(1, 1800, 0, None, gpus=1).usage, 0.0, 1800.0)])
    assert usage is not None and usage.gpus == 1 and usage.gpu_hours == pytest.approx(1.5)


def test_no_usage_unless_every_task_reports_it() -> None:
    """A sum over some tasks would understate the job: nothing instead."""
    silent = SchedulerStatus(JobState.SUCCEEDED, "COMPLETED", exit_code=0, started_at=100.0, finished_at=110.0)
    assert aggregate_parts([("1", _task(10, 20, 100, None)), ("2", silent)]).usage is None


def test_wall_time_is_the_longest_task_when_a_task_does_not_say_when_it_ran() -> None:
    a, b = _task(10, 20, 100, None).usage, _task(10, 50, 100, None).usage
    usage = combine_usage([(a, 100.0, 120.0), (b, None, None)])
    assert usage is not None and usage.elapsed_seconds == 50 and usage.core_seconds == 2 * 70
