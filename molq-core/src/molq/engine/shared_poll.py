"""One poll per cluster per interval, whatever the number of processes; a command budget; a
circuit breaker.

Every refresh of a paced cluster (its scheduler has a :class:`~molq.pacing.PacingPolicy`)
asks :func:`open_gate` before running status commands. The gate reads and updates the
cluster's shared record (:class:`~molq.pacing.ClusterPace`) in one atomic store operation and
says whether this refresh polls or uses what the store already holds:

* **shared answer** -- a poll's decisions are in the store once it ends; a job submitted before
  the poll began and updated no later than its end is described there as the poll found it. A waiting loop's refresh whose jobs are
  all described so, within the current interval, polls nothing. So does one while another
  process is polling (it holds the claim), and any less than ``min_interval`` after the last
  poll: a new submission waits at most that long for its first answer. A refresh the user asked
  for reuses only a covering answer younger than ``min_interval`` (see :func:`open_gate`).
* **adaptive interval** -- ``min_interval`` after a poll that changed something or looked at a
  new job; x1.5 after every quiet poll, up to ``max_interval``.
* **budget** -- the status commands of all processes together, per minute; once spent, the
  store's states stand until the minute is over.
* **circuit breaker** -- a poll in which no source answered pauses every process's polling,
  ``backoff_initial`` doubled per consecutive failure up to ``backoff_max``; after the pause one
  process probes (the claim makes it one), and only its success resumes polling. An outage
  costs a few commands per backoff step, and the recovery one poll, not a burst.

A skipped poll is "no evidence": nothing about a job is decided from it. Stores without the
shared record (a store plugin predating it) and unpaced schedulers (the local one) poll as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

import attrs

from molq.engine.context import EngineContext
from molq.evidence import Observation
from molq.identity import host_identity
from molq.model import JobRecord
from molq.pacing import BUDGET_WINDOW, ClusterPace, PacingPolicy

log = logging.getLogger("molq.engine")

__all__ = ["PollGate", "open_gate", "pace_summary", "CLAIM_SECONDS", "BUDGET_WINDOW"]

#: How long a claimed poll keeps others waiting if its process dies mid-poll.
CLAIM_SECONDS = 60.0
#: Factor applied to the interval after a poll in which nothing moved.
QUIET_GROWTH = 1.5

# Per process and cluster: the pause or budget window already warned about (warn once each).
_warned: dict[tuple[str, str], float] = {}
_warned_lock = threading.Lock()


def _owner() -> str:
    return f"{host_identity()}:{os.getpid()}:{threading.get_ident()}"


def policy_of(ctx: EngineContext) -> PacingPolicy | None:
    """The cluster's pacing, or None when its polls are not shared (unpaced scheduler, or a
    store without the shared record)."""
    policy = ctx.scheduler.pacing
    if policy is None or not hasattr(ctx.store, "update_pace"):
        return None
    return policy


def _covered(p: ClusterPace, records: Sequence[JobRecord]) -> bool:
    """Whether the last poll describes every record: none was submitted after the poll began
    (it may have missed it) and none was changed after its decisions were written (by anyone
    else: a cancel request, a resubmission)."""
    if p.written_at is None or p.polled_at is None:
        return False
    for r in records:
        if max(r.submitted_at or 0.0, r.created_at or 0.0) > p.polled_at or (r.updated_at or 0.0) > p.written_at:
            return False
    return True


def _newest_change(records: Sequence[JobRecord]) -> float:
    return max((max(r.updated_at or 0.0, r.submitted_at or 0.0, r.created_at or 0.0) for r in records), default=0.0)


@attrs.define
class PollGate:
    """One refresh's permission to poll; :meth:`close` records how the poll went."""

    ctx: EngineContext
    policy: PacingPolicy | None
    polls: bool
    owner: str = ""
    started: float = 0.0
    fresh_jobs: bool = False
    problems: tuple[str, ...] = ()
    _commands_before: int = 0

    def commands_so_far(self) -> int:
        log_ = getattr(self.ctx.scheduler, "command_log", None)
        return len(log_) if isinstance(log_, list) else 0

    def close(self, observation: Observation | None, changed: int) -> None:
        """Record the poll: its commands, its outcome (``observation`` None: the refresh broke
        off; the claim is given back and nothing else is recorded)."""
        if not self.polls or self.policy is None:
            return
        policy = self.policy
        ran = self.commands_so_far() - self._commands_before
        if getattr(self.ctx.scheduler, "command_log", None) is None:
            ran = 1  # a scheduler that keeps no log: count the poll as one command
        failed = observation is not None and bool(observation.problems) and not observation.statuses \
            and not observation.absent and not observation.ended
        now = time.time()
        note: list[str] = []

        def change(p: ClusterPace) -> ClusterPace:
            out = attrs.evolve(p, window_commands=p.window_commands + ran)
            if p.claimed_by == self.owner:
                out = attrs.evolve(out, claimed_by=None, claimed_until=0.0)
            if observation is None:
                return out
            if failed:
                failures = p.failures + 1
                pause = min(policy.backoff_initial * 2 ** (failures - 1), policy.backoff_max)
                note.append(f"{failures}:{pause:g}")
                return attrs.evolve(out, polled_at=self.started, failures=failures, paused_until=now + pause,
                                    last_error=observation.problems[0][:500])
            if p.failures:
                note.append("resumed")
            moved = changed > 0 or self.fresh_jobs
            interval = policy.min_interval if moved else min(max(p.interval, policy.min_interval) * QUIET_GROWTH,
                                                             policy.max_interval)
            return attrs.evolve(out, polled_at=self.started, written_at=now, interval=interval,
                                failures=0, paused_until=0.0, last_error=None)

        try:
            self.ctx.store.update_pace(self.ctx.cluster_name, change)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - pacing never fails a refresh whose states are written
            log.warning("%s: could not record the poll in the store: %s", self.ctx.cluster_name, exc)
            return
        for item in note:
            if item == "resumed":
                log.warning("%s: the scheduler answers again; polling resumes", self.ctx.cluster_name)
            else:
                failures, pause = item.split(":")
                log.warning("%s: the scheduler failed (%s in a row); every molq process on this store pauses "
                            "its status commands for %s s, then one probes", self.ctx.cluster_name, failures, pause)


def _warn_once(ctx: EngineContext, kind: str, key: float, message: str) -> tuple[str, ...]:
    with _warned_lock:
        if _warned.get((ctx.cluster_name, kind)) == key:
            return ()
        _warned[(ctx.cluster_name, kind)] = key
    log.warning("%s: %s", ctx.cluster_name, message)
    return (message,)


def open_gate(ctx: EngineContext, records: Sequence[JobRecord], *, waiting: bool = False) -> PollGate:
    """Whether this refresh runs status commands for ``records`` (see the module docstring).

    ``waiting``: the refresh of a loop (``watch``, the daemon), which follows the adaptive
    interval. Otherwise the refresh was asked for: it uses the stored answer only when that
    describes every job and is younger than ``min_interval``, and polls at once for a job no
    poll has seen yet. The budget and the circuit breaker bind both."""
    policy = policy_of(ctx)
    if policy is None or not records:
        return PollGate(ctx, None, polls=bool(records))
    owner = _owner()
    now = time.time()
    newest = _newest_change(records)
    verdict: list[str] = []

    def change(p: ClusterPace) -> ClusterPace | None:
        if p.paused_until > now:
            verdict.append("paused")
            return None
        claim_start = p.claimed_until - CLAIM_SECONDS
        if p.claimed_by not in (None, owner) and p.claimed_until > now and (waiting or newest <= claim_start):
            verdict.append("claimed")
            return None
        last = max(p.polled_at or 0.0, claim_start if p.claimed_by else 0.0)
        if p.budget_spent(now, policy.commands_per_minute):
            verdict.append("budget")
            return None
        probing = p.failures > 0  # the pause is over: this poll is the probe
        covered = _covered(p, records)
        if not probing:
            if covered and now - last < (max(p.interval, policy.min_interval) if waiting else policy.min_interval):
                verdict.append("reuse")
                return None
            if waiting and now - last < policy.min_interval:
                verdict.append("reuse")  # a new job waits at most min_interval for its first answer
                return None
            if not covered:
                verdict.append("fresh")
        verdict.append("poll")
        return attrs.evolve(p.in_window(now), claimed_by=owner, claimed_until=now + CLAIM_SECONDS)

    try:
        before, written = ctx.store.update_pace(ctx.cluster_name, change)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the store briefly locked: poll as an unshared process would
        log.warning("%s: could not read the shared poll record: %s", ctx.cluster_name, exc)
        return PollGate(ctx, None, polls=True)
    gate = PollGate(ctx, policy, polls=written is not None, owner=owner, started=now, fresh_jobs="fresh" in verdict)
    if gate.polls:
        gate._commands_before = gate.commands_so_far()
        return gate
    if "paused" in verdict:
        gate.problems = _warn_once(
            ctx, "paused", before.paused_until,
            f"the scheduler failed {before.failures} time(s) in a row ({before.last_error}); status commands "
            f"are paused for {max(before.paused_until - now, 0):.0f} s more, then one probe; stored states stand")
    elif "budget" in verdict:
        gate.problems = _warn_once(
            ctx, "budget", before.window_start,
            f"the budget of {policy.commands_per_minute} scheduler commands per minute is spent; stored "
            f"states stand until the minute is over")
    return gate


def pace_summary(store: object, cluster_name: str, *, now: float | None = None) -> str | None:
    """One line about a paced cluster's polling when it is not normal (paused by the circuit
    breaker), for ``molq daemon status`` and ``watch``; None otherwise."""
    reader = getattr(store, "read_pace", None)
    if reader is None:
        return None
    pace: ClusterPace = reader(cluster_name)
    now = time.time() if now is None else now
    if pace.failures and pace.paused_until > now:
        return (f"scheduler failing ({pace.failures} in a row: {pace.last_error}); polling paused, "
                f"next probe in {pace.paused_until - now:.0f} s")
    if pace.failures:
        return f"scheduler failing ({pace.failures} in a row: {pace.last_error}); probing"
    return None
