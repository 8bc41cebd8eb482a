"""The partitions' time limits molq reads from ``scontrol --all --oneliner show partition``
(a retry that grows the time stops at them): real output from other projects and this
project's test clusters, and the live clusters themselves (where MaxTime is UNLIMITED: no cap).
"""

from __future__ import annotations

import pytest
from molq import Cluster
from molq.batch import PartitionLimits
from molq.errors import SchedulerError
from molq.transport import CommandResult
from molq_slurm import SlurmDialect

# hpcugent/vsc-administration, its scontrol tests (test/slurm_scontrol.py): SLURM 20.11.6,
# one partition, the default, with a three-day MaxTime.
VSC = ("PartitionName=mypart AllowGroups=gabc,wheel AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES "
       "QoS=N/A DefaultTime=01:00:00 DisableRootJobs=YES ExclusiveUser=NO GraceTime=0 Hidden=NO "
       "MaxNodes=UNLIMITED MaxTime=3-00:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=node1,node2 "
       "PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE "
       "PreemptMode=OFF State=UP TotalCPUs=32 TotalNodes=2 SelectTypeParameters=NONE JobDefaults=(null) "
       "DefMemPerCPU=800 MaxMemPerNode=3200 TRESBillingWeights=CPU=1,Mem=1.33G\n")

# skypilot-org/skypilot, its Slurm adaptor's unit tests (``scontrol show partitions -o``):
# partition names with spaces, MaxTime UNLIMITED everywhere (abridged to the fields that
# matter here plus the free-text neighbours of the names).
SKYPILOT = (
    "PartitionName=dev AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A "
    "DefaultTime=NONE Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 "
    "Nodes=ip-10-3-0-193,ip-10-3-68-50 State=UP TotalCPUs=248 TRES=cpu=248,mem=1216G,node=6,billing=248,gres/gpu=12\n"
    "PartitionName=CPU nodes (amd) AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO "
    "QoS=N/A DefaultTime=NONE Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 "
    "Nodes=ip-10-3-0-193,ip-10-3-215-227 State=UP TotalCPUs=4 TRES=cpu=4,mem=32G,node=2,billing=4\n"
    "PartitionName=GPU nodes (nvidia) AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO "
    "QoS=N/A DefaultTime=NONE Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 "
    "Nodes=ip-10-3-68-50,ip-10-3-200-46 State=UP TotalCPUs=240 TRES=cpu=240,mem=1152G,node=2,billing=240,gres/gpu=12\n"
)

# This project's SLURM 22.05.8 test cluster molqacct (tests/services/slurm.sh), 2026-12-02,
# ``scontrol --all --oneliner show partition``, with a made-up third partition whose MaxTime is
# written the way ``scontrol`` prints hours and minutes (``mins2time_str``: HH:MM:SS).
LIVE = (
    "PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A "
    "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=molqacct-n1 PriorityJobFactor=1 "
    "PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP "
    "TotalCPUs=16 TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED "
    "MaxMemPerNode=UNLIMITED TRES=cpu=16,mem=8G,node=1,billing=16\n"
    "PartitionName=long AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A "
    "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=molqacct-n1 State=UP TotalCPUs=16\n"
    "PartitionName=short AllowGroups=ALL Default=NO QoS=N/A DefaultTime=00:10:00 Hidden=YES MaxNodes=UNLIMITED "
    "MaxTime=04:30:00 MinNodes=0 Nodes=molqacct-n1 State=UP TotalCPUs=16\n"
)


def _limits(stdout: str, returncode: int = 0, stderr: str = "") -> PartitionLimits:
    dialect = SlurmDialect()
    return dialect.parse_partition_limits(CommandResult(tuple(dialect.partition_limits_argv()), returncode,
                                                        stdout, stderr))


def test_max_time_and_default_partition() -> None:
    vsc = _limits(VSC)
    assert vsc == PartitionLimits({"mypart": 3 * 86400}, "mypart")
    assert vsc.max_time_of(None) == vsc.max_time_of("mypart") == 3 * 86400
    assert vsc.max_time_of("elsewhere") is None  # a partition the site does not list: no cap


def test_names_with_spaces_and_unlimited_partitions() -> None:
    sky = _limits(SKYPILOT)
    assert sky == PartitionLimits({"dev": None, "CPU nodes (amd)": None, "GPU nodes (nvidia)": None}, "dev")
    assert sky.max_time_of("CPU nodes (amd)") is None


def test_hours_minutes_seconds_and_lists_of_partitions() -> None:
    live = _limits(LIVE)
    assert live.max_time == {"debug": None, "long": None, "short": 4 * 3600 + 30 * 60} and live.default == "debug"
    assert live.max_time_of("short") == 16200
    # A job given several partitions may run in any: the most generous one bounds it.
    assert live.max_time_of("short,debug") is None
    assert _limits(VSC + LIVE).max_time_of("mypart,short") == 3 * 86400


def test_a_failed_scontrol_is_an_error_not_no_limits() -> None:
    with pytest.raises(SchedulerError):
        _limits("", 1, "slurm_load_partitions: Unable to contact slurm controller (connect failure)")


def test_the_default_partition_of_the_profile_counts() -> None:
    assert SlurmDialect(default_partition="short").job_partition(None) == "short"
    assert SlurmDialect().job_partition("long") == "long"


@pytest.mark.slurm
def test_the_live_clusters_partition_limits_are_read_once(slurm_cluster) -> None:
    """debug and long are MaxTime=INFINITE (no cap); short is MaxTime=00:03:00."""
    cluster = Cluster(f"limits-{slurm_cluster.name}", "slurm", scheduler_options={"env": dict(slurm_cluster.env)})
    sched = cluster.scheduler_impl
    assert {p: sched.max_time_limit(p) for p in (None, "debug", "long", "short")} == {
        None: None, "debug": None, "long": None, "short": 180}
    # The site's answer is read once per scheduler object, like its array limit.
    assert [name for name, _ in sched.command_log] == ["scontrol"]  # type: ignore[attr-defined]
