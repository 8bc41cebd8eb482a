"""molq's scheduler conformance kit, run through the Submitor on both real SLURM clusters."""

from __future__ import annotations

from typing import Any

import pytest
from molq.cluster import Cluster
from molq.model import JobScheduling
from molq.testing import SchedulerConformance

pytestmark = pytest.mark.slurm


class TestSlurmConformance(SchedulerConformance):
    @pytest.fixture
    def cluster(self, slurm_cluster) -> Cluster:
        return Cluster(f"conformance-{slurm_cluster.name}", "slurm", scheduler_options={"env": slurm_cluster.env})

    @pytest.fixture
    def job_timeout(self) -> float:
        return 90.0

    @pytest.fixture
    def unsupported_field(self) -> dict[str, Any] | None:
        return {"scheduling": JobScheduling(priority="10")}
