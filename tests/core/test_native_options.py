"""``JobScheduling.rerunnable`` and ``JobScheduling.extra_directives`` through the public API:
rendered by each backend's own code (``Submitor.render_job_script``, what ``molq submit
--dry-run`` prints), refused before anything is stored, and set from profiles and the CLI."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "corpus"))

from fakecmd import on_path  # noqa: E402
from molq import Cluster, Submitor  # noqa: E402
from molq.errors import ConfigError  # noqa: E402
from molq.model import JobScheduling, SubmitorDefaults  # noqa: E402
from molq.store import JobStore  # noqa: E402


@pytest.fixture(autouse=True)
def submit_commands(tmp_path, monkeypatch):
    """Client commands on PATH (the Submitor checks the submit command exists, even for a
    dry run); they print a job id and are never meant to be reached by a refused job."""
    fakes = on_path(tmp_path, monkeypatch)
    fakes.set("sbatch", "1\n")
    fakes.set("qsub", "1.server\n")
    fakes.set("bsub", "Job <1> is submitted to default queue <normal>.\n")
    return fakes


def _script(tmp_path, scheduler: str, scheduling: JobScheduling, defaults: SubmitorDefaults | None = None) -> str:
    store = JobStore(tmp_path / f"{scheduler}.db")
    with Submitor(Cluster(f"c-{scheduler}", scheduler), store=store, defaults=defaults,
                  jobs_dir=str(tmp_path / "jobs")) as sub:
        return sub.render_job_script(argv=["true"], scheduling=scheduling)


def _bsub_words(script: str) -> list[str]:
    line = next(ln for ln in script.splitlines() if ln.startswith("# Submitted by molq with: bsub "))
    return shlex.split(line.removeprefix("# Submitted by molq with: "))


@pytest.mark.parametrize(("scheduler", "yes", "no"), [
    ("slurm", "#SBATCH --requeue", "#SBATCH --no-requeue"),
    ("pbs", "#PBS -r y", "#PBS -r n"),
])
def test_rerunnable_renders_the_schedulers_directive(tmp_path, scheduler, yes, no) -> None:
    on = _script(tmp_path, scheduler, JobScheduling(rerunnable=True)).splitlines()
    off = _script(tmp_path, scheduler, JobScheduling(rerunnable=False)).splitlines()
    unset = _script(tmp_path, scheduler, JobScheduling()).splitlines()
    assert yes in on and no not in on
    assert no in off and yes not in off
    assert yes not in unset and no not in unset


def test_rerunnable_on_lsf_is_a_bsub_option(tmp_path) -> None:
    assert "-r" in _bsub_words(_script(tmp_path, "lsf", JobScheduling(rerunnable=True)))
    words = _bsub_words(_script(tmp_path, "lsf", JobScheduling(rerunnable=False)))
    assert "-rn" in words and "-r" not in words
    unset = _bsub_words(_script(tmp_path, "lsf", JobScheduling()))
    assert "-r" not in unset and "-rn" not in unset


def test_a_jobs_false_switches_off_a_default_true(tmp_path) -> None:
    defaults = SubmitorDefaults(scheduling=JobScheduling(rerunnable=True))
    assert "#SBATCH --requeue" in _script(tmp_path, "slurm", JobScheduling(), defaults)
    script = _script(tmp_path, "slurm", JobScheduling(rerunnable=False), defaults)
    assert "#SBATCH --no-requeue" in script.splitlines()


@pytest.mark.parametrize(("scheduler", "directive", "line"), [
    ("slurm", "--constraint=avx2&ib", "#SBATCH --constraint=avx2&ib"),
    ("slurm", "--nice=5", "#SBATCH --nice=5"),
    ("pbs", "-l software=abaqus", "#PBS -l software=abaqus"),
    ("pbs", "-m abe", "#PBS -m abe"),
])
def test_extra_directives_become_prefixed_header_lines(tmp_path, scheduler, directive, line) -> None:
    script = _script(tmp_path, scheduler, JobScheduling(extra_directives=[directive]))
    lines = script.splitlines()
    assert line in lines
    # In the header: before the first line bash executes, so the scheduler reads it.
    first_code = next(i for i, ln in enumerate(lines) if i and ln.strip() and not ln.startswith("#"))
    assert lines.index(line) < first_code


def test_extra_directives_on_lsf_are_bsub_words(tmp_path) -> None:
    script = _script(tmp_path, "lsf", JobScheduling(extra_directives=("-R 'select[mem>4000]'", "-app big")))
    words = _bsub_words(script)
    pairs = list(zip(words, words[1:]))
    assert ("-R", "select[mem>4000]") in pairs and ("-app", "big") in pairs


def test_a_directive_line_stays_a_comment_to_bash(tmp_path) -> None:
    """Shell metacharacters in a directive never run: the script still does only what was asked."""
    marker = tmp_path / "pwned"
    script = _script(tmp_path, "slurm", JobScheduling(extra_directives=[f"--comment2=x; touch {marker} #`id`"]))
    header = "\n".join(ln for ln in script.splitlines() if ln.startswith(("#!", "#SBATCH")))
    subprocess.run(["bash", "-c", header], check=True)
    assert not marker.exists()


@pytest.mark.parametrize(("value", "problem"), [
    ("--mem=4G\n/bin/rm -rf ~", "one line"),
    ("--mem=4G\r", "one line"),
    ("--x\x00", "one line"),
    ("#SBATCH --mem=4G", "without|option only"),
    ("touch /tmp/x", "starting with '-'"),
    ("-", "starting with '-'"),
    ("- x", "starting with '-'"),
    (42, "not a string"),
])
def test_bad_directives_are_refused_when_built(value, problem) -> None:
    with pytest.raises(ConfigError) as err:
        JobScheduling(extra_directives=[value])
    assert any(p in str(err.value) for p in problem.split("|"))


@pytest.mark.parametrize(("scheduler", "directive", "field"), [
    ("slurm", "--comment=other", "molq's tag"),
    ("slurm", "--output=/tmp/o", "execution.output_file"),
    ("slurm", "-o /tmp/o", "execution.output_file"),
    ("slurm", "--requeue", "scheduling.rerunnable"),
    ("slurm", "--dependency=afterok:1", "scheduling.dependency"),
    ("pbs", "-v MOLQ_TAG=x", "execution.env"),
    ("pbs", "-o /tmp/o", "execution.output_file"),
    ("pbs", "-r y", "scheduling.rerunnable"),
    ("lsf", "-Jd other", "molq's tag"),
    ("lsf", "-oo /tmp/o", "execution.output_file"),
    ("lsf", "-rn", "scheduling.rerunnable"),
])
def test_directives_overriding_molqs_own_options_are_refused_before_storing(tmp_path, scheduler, directive,
                                                                           field) -> None:
    store = JobStore(tmp_path / "jobs.db")
    with Submitor(Cluster(f"c-{scheduler}", scheduler), store=store, jobs_dir=str(tmp_path / "jobs")) as sub:
        with pytest.raises(ConfigError) as err:
            sub.submit_job(argv=["true"], scheduling=JobScheduling(extra_directives=[directive]))
        assert field in str(err.value) and directive in str(err.value)
        assert sub.list_jobs(include_terminal=True) == []
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())


@pytest.mark.parametrize("scheduling", [JobScheduling(rerunnable=True),
                                        JobScheduling(extra_directives=["--constraint=x"])])
def test_local_scheduler_refuses_what_it_cannot_honour(tmp_path, scheduling) -> None:
    with Submitor(Cluster("laptop"), store=JobStore(tmp_path / "jobs.db"), jobs_dir=str(tmp_path / "jobs")) as sub:
        with pytest.raises(ConfigError, match="not supported by the 'local' scheduler"):
            sub.submit_job(argv=["true"], scheduling=scheduling)
        assert sub.list_jobs(include_terminal=True) == []


def test_local_scheduler_accepts_no_rerun(tmp_path) -> None:
    """The local scheduler never reruns a job: asking it not to is already true."""
    with Submitor(Cluster("laptop"), store=JobStore(tmp_path / "jobs.db"), jobs_dir=str(tmp_path / "jobs")) as sub:
        record = sub.submit_job(argv=["true"], scheduling=JobScheduling(rerunnable=False)).wait(timeout=60)
    assert record.state.value == "succeeded"


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MOLQ_HOME=str(tmp_path / "home"))
    env.pop("MOLQ_CONFIG", None)
    env.pop("MOLQ_STORE_URL", None)
    return subprocess.run([sys.executable, "-m", "molq", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_cli_submit_dry_run_renders_both(tmp_path) -> None:
    _cli(tmp_path, "profile", "add", "hpc", "--scheduler", "slurm")
    result = _cli(tmp_path, "submit", "-p", "hpc", "--dry-run", "--no-rerunnable",
                  "--directive=--constraint=avx2", "--directive", "--nice=3", "--", "true")
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert "#SBATCH --no-requeue" in lines
    assert "#SBATCH --constraint=avx2" in lines and "#SBATCH --nice=3" in lines


def test_cli_bad_directive_is_a_one_line_error(tmp_path) -> None:
    _cli(tmp_path, "profile", "add", "hpc", "--scheduler", "slurm")
    result = _cli(tmp_path, "submit", "-p", "hpc", "--directive", "--output=/x", "--", "true")
    assert result.returncode != 0
    assert "execution.output_file" in (result.stdout + result.stderr) and "Traceback" not in (result.stdout + result.stderr)


def test_profile_defaults_carry_both_fields(tmp_path) -> None:
    result = _cli(tmp_path, "profile", "add", "pbs1", "--scheduler", "pbs", "--rerunnable",
                  "--directive", "-l software=abaqus")
    assert result.returncode == 0, result.stderr
    toml = (tmp_path / "home" / "config.toml").read_text()
    assert "rerunnable = true" in toml and "software=abaqus" in toml
    result = _cli(tmp_path, "submit", "-p", "pbs1", "--dry-run", "--", "true")
    assert result.returncode == 0, result.stderr
    assert "#PBS -r y" in (result.stdout + result.stderr).splitlines()
    assert "#PBS -l software=abaqus" in (result.stdout + result.stderr).splitlines()
    # The job's own value wins over the profile's.
    result = _cli(tmp_path, "submit", "-p", "pbs1", "--dry-run", "--no-rerunnable", "--", "true")
    assert "#PBS -r n" in (result.stdout + result.stderr).splitlines() and "#PBS -r y" not in (result.stdout + result.stderr).splitlines()
