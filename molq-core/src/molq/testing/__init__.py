"""Conformance kit for scheduler and transport plugins.

Subclass the base classes in a test module of your plugin and provide the fixtures they need;
pytest then runs the whole kit against your implementation::

    from molq.testing import SchedulerConformance

    class TestMyScheduler(SchedulerConformance):
        @pytest.fixture
        def cluster(self, tmp_path):
            return Cluster("conformance", "mysched", scheduler_options={...})

The in-repo backends (local, SLURM, PBS, LSF, SSH) run the same kit.
"""

from molq.testing.scheduler import SchedulerConformance
from molq.testing.store import StoreConformance
from molq.testing.transport import TransportConformance

__all__ = ["SchedulerConformance", "StoreConformance", "TransportConformance"]
