"""Preparing a submission: validation, defaults, dependencies, the stored description.

Pure apart from reading upstream records from the store and asking the scheduler to validate:
nothing is persisted or submitted here, so every error reaches the caller first.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from molq import serde
from molq.arrays import part_ids
from molq.engine.context import EngineContext
from molq.errors import ConfigError, JobNotFoundError
from molq.model import (
    CompiledDependency,
    DependencyRef,
    JobDependency,
    JobExecution,
    JobRecord,
    JobResources,
    JobScheduling,
    JobSpec,
    JobState,
    RetryPolicy,
    Script,
    merge_onto_default,
)
from molq.store.types import NewSubmission, StoredTarget

__all__ = ["JobRequest", "Submission", "prepare", "merge_defaults", "dependency_verdict", "check_texts", "stored_target",
           "stored_request", "may_retry"]


@attrs.frozen
class Submission:
    """A validated submission: what the scheduler gets and what the store records."""

    spec: JobSpec
    record: NewSubmission

    @property
    def held(self) -> str | None:
        """Why molq must hold the job back instead of submitting it now (None: submit)."""
        return self.record.held

    @property
    def job_dir(self) -> str:
        return self.record.job_dir or ""


def _bad_text(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL byte"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "cannot be encoded as UTF-8 text (it holds a lone surrogate)"
    return None


def check_texts(**fields: Any) -> None:
    """Refuse text no scheduler can pass through faithfully (NUL bytes, lone surrogates)."""
    def walk(name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str):
            problem = _bad_text(value)
            if problem:
                raise ConfigError(f"{name} {problem}: {value!r}")
        elif isinstance(value, dict):
            for key, val in value.items():
                walk(f"{name} key", key)
                walk(f"{name}[{key!r}]", val)
        elif isinstance(value, (list, tuple)):
            for i, val in enumerate(value):
                walk(f"{name}[{i}]", val)
        elif attrs.has(type(value)):
            for field in attrs.fields(type(value)):
                walk(f"{name}.{field.name}", getattr(value, field.name))

    for name, value in fields.items():
        walk(name, value)
    execution = fields.get("execution")
    cwd = getattr(execution, "cwd", None)
    if isinstance(cwd, str) and ("\n" in cwd or "\r" in cwd):
        raise ConfigError(f"execution.cwd must be one line, got {cwd!r}")


def merge_defaults(base: Any, override: Any) -> Any:
    """Field-wise merge: what the job set wins (even False, 0 or empty), what it left out
    comes from the default."""
    return merge_onto_default(base, override)



@attrs.frozen
class JobRequest:
    """What a caller asked for, as given to :meth:`~molq.Submitor.submit_job`."""

    argv: Sequence[str] | None = None
    command: str | None = None
    script: Script | None = None
    resources: JobResources | None = None
    scheduling: JobScheduling | None = None
    execution: JobExecution | None = None
    metadata: dict[str, str] | None = None
    retry: RetryPolicy | None = None
    after_started: Sequence[str] | None = None
    after: Sequence[str] | None = None
    after_failure: Sequence[str] | None = None
    after_success: Sequence[str] | None = None
    job_dir_name: str | None = None


def prepare(
    ctx: EngineContext, request: JobRequest, *, job_id: str | None = None, attempt_of: JobRecord | None = None
) -> Submission:
    """Validate ``request`` against the defaults and the scheduler; build what to store and submit.

    ``job_id`` and ``attempt_of`` are given for a retry (the next attempt of ``attempt_of``).
    """
    argv, command, script = request.argv, request.command, request.script
    resources, scheduling, execution = request.resources, request.scheduling, request.execution
    metadata, retry, job_dir_name = request.metadata, request.retry, request.job_dir_name
    after_started, after = request.after_started, request.after
    after_failure, after_success = request.after_failure, request.after_success
    given = [name for name, v in (("argv", argv), ("command", command), ("script", script)) if v is not None]
    if len(given) != 1:
        raise ConfigError(
            "submit_job needs exactly one of argv, command or script"
            + (f" (got {', '.join(given)})" if given else " (got none)")
        )
    if argv is not None:
        if isinstance(argv, str) or not all(isinstance(a, str) for a in argv) or not argv:
            raise ConfigError("argv must be a non-empty list of strings (use command= for a shell line)")
        argv = tuple(argv)
    if command is not None and (not isinstance(command, str) or not command.strip()):
        raise ConfigError("command must be a non-empty string")
    if script is not None and not isinstance(script, Script):
        raise ConfigError("script must be a molq.Script (Script.inline(text) or Script.path(p))")
    for name, value in (("resources", resources), ("scheduling", scheduling), ("execution", execution)):
        expected = {"resources": JobResources, "scheduling": JobScheduling, "execution": JobExecution}[name]
        if value is not None and not isinstance(value, expected):
            raise ConfigError(f"{name} must be a {expected.__name__}, got {type(value).__name__}")
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ConfigError("metadata must be a dict of strings to strings")
    if job_dir_name is not None and (not job_dir_name or "/" in job_dir_name or job_dir_name in (".", "..")):
        raise ConfigError(f"job_dir_name must be a single path component, got {job_dir_name!r}")

    resources = merge_defaults(ctx.defaults.resources, resources) or JobResources()
    scheduling = merge_defaults(ctx.defaults.scheduling, scheduling) or JobScheduling()
    execution = merge_defaults(ctx.defaults.execution, execution) or JobExecution()

    refs: list[DependencyRef] = list(scheduling.dependencies)
    for cond, ids in (("after_started", after_started), ("after", after),
                      ("after_failure", after_failure), ("after_success", after_success)):
        if ids is None:
            continue
        if isinstance(ids, str):
            raise ConfigError(f"{cond} must be a list of job ids, not a string")
        refs.extend(DependencyRef(i, cond) for i in ids)  # type: ignore[arg-type]
    if refs and scheduling.dependency is not None:
        raise ConfigError("raw scheduling.dependency cannot be combined with molq job dependencies")

    check_texts(argv=argv, command=command, script=script, execution=execution, metadata=metadata)
    job_id = job_id or uuid.uuid4().hex
    sched = ctx.scheduler
    compiled, dep_rows, held = compile_dependencies(ctx, job_id, refs)

    transport = ctx.target.transport
    cwd = execution.cwd
    if cwd is None:
        cwd = transport.home() if transport.is_remote else os.getcwd()
    elif not cwd.startswith("/"):
        if transport.is_remote:
            cwd = f"{transport.home().rstrip('/')}/{cwd}"
        else:
            cwd = os.path.abspath(cwd)
    if not transport.is_remote and execution.cwd is not None and not os.path.isdir(cwd):
        # As sbatch refuses a missing --chdir: never create a mistyped tree and run there.
        raise ConfigError(f"the working directory {cwd!r} does not exist")
    if ctx.jobs_dir is not None:
        base = ctx.jobs_dir if ctx.jobs_dir.startswith("/") else f"{cwd.rstrip('/')}/{ctx.jobs_dir}"
    else:
        base = f"{cwd.rstrip('/')}/.molq/jobs"
    job_dir = f"{base.rstrip('/')}/{job_dir_name or job_id}"

    spec = JobSpec(
        job_id=job_id,
        command_type=given[0],  # type: ignore[arg-type]
        argv=argv,  # type: ignore[arg-type]
        command=command,
        script=script,
        resources=resources,
        scheduling=attrs.evolve(scheduling, dependencies=()),
        execution=execution,
        cwd=cwd,
        dependencies=tuple(compiled),
        metadata=dict(metadata or {}),
    )
    sched.capabilities().check(spec, ctx.target.scheduler)
    sched.validate(spec)

    retry_policy = retry or ctx.default_retry_policy
    stored_spec = {
        "argv": list(argv) if argv is not None else None,
        "command": command,
        "script": serde.unstructure(script) if script is not None else None,
        "resources": serde.unstructure(resources),
        "scheduling": serde.unstructure(attrs.evolve(scheduling, dependencies=())),
        "execution": serde.unstructure(execution),
        "dependencies": [serde.unstructure(r) for r in refs],
        "metadata": dict(metadata or {}),
        "job_dir_base": base,
        "job_dir_name": job_dir_name,
    }
    record = NewSubmission(
        job_id=job_id,
        cluster_name=ctx.cluster_name,
        scheduler=ctx.target.scheduler,
        command_type=spec.command_type,
        command_display=spec.display(),
        job_name=execution.job_name,
        profile_name=ctx.profile_name,
        cwd=cwd,
        job_dir=job_dir,
        metadata=dict(metadata or {}),
        spec=stored_spec,
        retry=retry_policy,
        target=stored_target(ctx),
        dependencies=tuple(dep_rows),
        held="; ".join(held) or None,
    )
    if attempt_of is not None:
        record = attrs.evolve(
            record,
            root_job_id=attempt_of.root_job_id,
            attempt=attempt_of.attempt + 1,
            previous_attempt_job_id=attempt_of.job_id,
            retry_group_id=attempt_of.retry_group_id or attempt_of.root_job_id,
            profile_name=attempt_of.profile_name,
        )
    return Submission(spec, record)


def stored_target(ctx: EngineContext) -> StoredTarget:
    """How to rebuild this context's Cluster (computed once per context)."""
    cached = ctx.target_cache
    if cached is None:
        target = ctx.target
        options = target.scheduler_options
        cached = StoredTarget(
            scheduler=target.scheduler,
            host=target.host,
            scheduler_options=serde.unstructure(options) if options is not None else None,
            transport=target.transport_name,
            transport_options=target.transport_options or None,
        )
        ctx.target_cache = cached
    return cached


def may_retry(ctx: EngineContext, upstream: JobRecord) -> bool:
    """Whether ``upstream`` may still be followed by another attempt of its retry family."""
    if upstream.is_terminal:
        return upstream.next_retry_at is not None and upstream.retried_by is None
    policy = ctx.store.internals(ctx.cluster_name, upstream.job_id).retry
    return policy is not None and upstream.attempt < policy.max_attempts


def compile_dependencies(
    ctx: EngineContext, job_id: str, refs: Sequence[DependencyRef]
) -> tuple[list[CompiledDependency], list[JobDependency], list[str]]:
    """Native dependencies on the upstreams' latest attempts, the dependency rows, and why the
    job must be held back by molq (an upstream whose family may still retry: the scheduler
    would judge the dependency on an attempt that is not the family's last)."""
    compiled: list[CompiledDependency] = []
    rows: list[JobDependency] = []
    held: list[str] = []
    seen: set[tuple[str, str]] = set()
    for ref in refs:
        try:
            upstream = ctx.latest_attempt(ref.job_id)
        except JobNotFoundError as exc:
            raise ConfigError(f"dependency {ref.condition}: {exc}") from None
        key = (upstream.job_id, ref.condition)
        if key in seen:
            continue
        seen.add(key)
        verdict = dependency_verdict(ref.condition, upstream)
        if verdict is False:
            raise ConfigError(
                f"dependency {ref.condition} on {upstream.job_id} can never be satisfied: "
                f"that job ended {upstream.state.value}"
            )
        native = None
        if verdict is None and ref.condition != "after_started" and may_retry(ctx, upstream):
            held.append(f"waiting for {upstream.root_job_id} and its retries ({ref.condition})")
        elif verdict is None and split_needs_molq(ref.condition, upstream):
            held.append(f"waiting for {upstream.root_job_id}, an array submitted in parts ({ref.condition})")
        elif verdict is None:
            if upstream.scheduler_job_id is None:
                raise ConfigError(
                    f"dependency on {upstream.job_id}: that job has no scheduler id yet "
                    f"(state {upstream.state.value}); wait until it is submitted"
                )
            # A split array is its parts: the condition must hold for every one of them.
            parts = part_ids(upstream.scheduler_job_id)
            compiled.extend(CompiledDependency(ref.condition, upstream.job_id, sid) for sid in parts)
            native = ",".join(ctx.scheduler.native_condition(ref.condition, sid) for sid in parts)
        rows.append(JobDependency(job_id, upstream.job_id, ref.condition, native))
    return compiled, rows, held


#: Conditions that hold for a split array when they hold for each of its parts; the others
#: ("one part failed", "one part started") no scheduler states over several jobs, so molq
#: holds the dependent and judges the molq job itself (molq.engine.hold).
_PER_PART_CONDITIONS = frozenset({"after_success", "after"})


def split_needs_molq(condition: str, upstream: JobRecord) -> bool:
    """Whether a dependency on ``upstream`` must be judged by molq because ``upstream`` is
    an array submitted in parts and ``condition`` is not "every part ...". """
    return condition not in _PER_PART_CONDITIONS and len(part_ids(upstream.scheduler_job_id)) > 1


def dependency_verdict(condition: str, upstream: JobRecord) -> bool | None:
    """True: already satisfied; False: never satisfiable; None: let the scheduler wait."""
    if upstream.is_terminal and upstream.next_retry_at is not None and upstream.retried_by is None:
        return None  # a retry is coming: wait for it
    if not upstream.is_terminal:
        if condition == "after_started" and upstream.started_at is not None:
            return True
        return None
    ok = upstream.state == JobState.SUCCEEDED
    if condition == "after":
        return True
    if condition == "after_success":
        return ok
    if condition == "after_failure":
        return not ok
    # after_started: it ran if it has a start time
    return upstream.started_at is not None


def stored_request(ctx: EngineContext, job_id: str) -> JobRequest:
    """The request a stored job was made from (for its retry, or its release from a hold)."""
    internal = ctx.store.internals(ctx.cluster_name, job_id)
    spec = internal.spec
    deps = tuple(serde.structure(d, DependencyRef) for d in spec["dependencies"])
    scheduling = attrs.evolve(serde.structure(spec["scheduling"], JobScheduling), dependencies=deps)
    return JobRequest(
        argv=spec["argv"], command=spec["command"],
        script=serde.structure(spec["script"], Script) if spec["script"] else None,
        resources=serde.structure(spec["resources"], JobResources),
        scheduling=scheduling,
        execution=serde.structure(spec["execution"], JobExecution),
        metadata=spec["metadata"] or None,
        retry=internal.retry,
    )
