"""The local scheduler and LocalTransport pass the molq.testing conformance kit."""

import pytest
from molq import Cluster, JobScheduling, LocalTransport
from molq.testing import SchedulerConformance, TransportConformance


class TestLocalScheduler(SchedulerConformance):
    @pytest.fixture
    def cluster(self):
        return Cluster("conformance-local")

    @pytest.fixture
    def job_timeout(self):
        return 30.0

    @pytest.fixture
    def unsupported_field(self):
        return {"scheduling": JobScheduling(partition="gpu")}


class TestLocalTransport(TransportConformance):
    @pytest.fixture
    def transport(self):
        return LocalTransport()

    @pytest.fixture
    def remote_dir(self, tmp_path):
        d = tmp_path / "remote"
        d.mkdir()
        return str(d)
