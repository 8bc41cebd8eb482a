"""`molq profile detect`: the parsers on real scheduler output, and the command on this
machine's real SLURM and atd, locally and over SSH (tests/services)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from molq.cli import detect

# Where each sample comes from:
#   SLURM_DEBIAN    `sbatch --version` of the test clusters here (Debian's slurm-wlm 22.05.8)
#   SLURM_TORQUE_QSTAT  `qstat --version` of SLURM's Torque wrappers (package slurm-wlm-torque)
#                   on this machine without SLURM_CONF
#   PBSPRO_*        `qstat --version` as quoted in public READMEs, tests and mailing lists
#                   (OpenPBS 2022.1.1, PBS Pro 18.2.3, PBSPro_9.2.0)
#   TORQUE_OLD      Torque 2.4's `qstat --version`, as a public test of a PBS flavour check has it
#   LSF_SUITE, LSF_K8S  `lsid` from a public LSF web-service README and IBM's lsf-operator docs
SLURM_DEBIAN = "slurm-wlm 22.05.8\n"
SLURM_UPSTREAM = "slurm 23.02.1\n"
SLURM_TORQUE_QSTAT = ("perl: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host\n"
                      "perl: error: fetch_config: DNS SRV lookup failed\n")
PBSPRO_2022 = "pbs_version = 2022.1.1\n"
PBSPRO_18 = "pbs_version = 18.2.3.20181206140456\n"
PBSPRO_9 = "pbs_version = PBSPro_9.2.0.81361\n"
TORQUE_OLD = "version: 2.4.16\n"
LSF_SUITE = """IBM Spectrum LSF Suite for Enterprise 10.2.0.15
Copyright International Business Machines Corp. 1992, 2016.
US Government Users Restricted Rights - Use, duplication or disclosure restricted by GSA ADP Schedule Contract with IBM Corp.

My cluster name is abc-re1
My master name is abc-re1-mgmt-1-9e6e-001.hpc.local
"""
LSF_K8S = """IBM Spectrum LSF Connetor for Kubernetes 10.1.0.0, Oct 17 2019
Copyright International Business Machines Corp. 1992, 2016.

My cluster name is myCluster
My master name is lsfmaster
"""


def probe_output(have, **sections):
    lines = [f"have {c}" for c in have]
    for name, text in sections.items():
        lines += [f"@@molq {name.replace('_', '-')}", text.rstrip("\n")]
    return "\n".join([*lines, "@@molq end"]) + "\n"


def test_version_parsers_on_real_output():
    assert detect.slurm_version(SLURM_DEBIAN) == "22.05.8"
    assert detect.slurm_version(SLURM_UPSTREAM) == "23.02.1"
    assert detect.slurm_version(SLURM_TORQUE_QSTAT) is None
    assert detect.slurm_default_partition("debug*\nlong\n") == "debug"
    assert detect.slurm_default_partition("gpu\ncpu\n") is None
    assert detect.pbs_version(PBSPRO_2022) == ("pbspro", "2022.1.1")
    assert detect.pbs_version(PBSPRO_18) == ("pbspro", "18.2.3.20181206140456")
    assert detect.pbs_version(PBSPRO_9) == ("pbspro", "9.2.0.81361")
    assert detect.pbs_version(TORQUE_OLD) == ("torque", "2.4.16")
    assert detect.pbs_version(SLURM_TORQUE_QSTAT) is None
    assert detect.pbs_default_queue("Server pbs1\n\tserver_state = Active\n\tdefault_queue = workq\n") == "workq"
    assert detect.lsf_version(LSF_SUITE) == "10.2.0.15" and detect.lsf_cluster(LSF_SUITE) == "abc-re1"
    assert detect.lsf_version(LSF_K8S) == "10.1.0.0" and detect.lsf_cluster(LSF_K8S) == "myCluster"
    assert detect.lsf_default_queue("Default Queues:  normal\nJob Dispatch Interval:  20 seconds\n") == "normal"
    assert detect.at_version("at version 3.2.5\nPlease report bugs to the Debian bug tracking system\n") == "3.2.5"


def test_interpretation():
    # SLURM with its Torque wrappers: one scheduler, not two.
    found = detect.interpret(probe_output(["sbatch", "sinfo", "qsub", "qstat"], slurm_version=SLURM_DEBIAN,
                                          slurm_partitions="debug*\nlong", pbs_version=SLURM_TORQUE_QSTAT))
    assert [(f.scheduler, f.version, f.default_queue, f.usable) for f in found] == [("slurm", "22.05.8", "debug", True)]
    assert "Torque compatibility wrappers" in found[0].notes[0]
    # SLURM installed but unconfigured: found, not usable, and why.
    (slurm,) = detect.interpret(probe_output(["sbatch"], slurm_version="sbatch: error: resolve_ctls_from_dns_srv"))
    assert not slurm.usable and "resolve_ctls" in slurm.notes[0]
    (pbs,) = detect.interpret(probe_output(["qsub", "qstat", "qmgr"], pbs_version=TORQUE_OLD,
                                           pbs_server="\tdefault_queue = batch"))
    assert (pbs.scheduler, pbs.flavor, pbs.version, pbs.default_queue) == ("pbs", "torque", "2.4.16", "batch")
    (lsf,) = detect.interpret(probe_output(["bsub", "lsid", "bparams"], lsf_id=LSF_SUITE,
                                           lsf_params="Default Queues:  normal"))
    assert (lsf.version, lsf.default_queue, lsf.notes) == ("10.2.0.15", "normal", ["LSF cluster abc-re1"])
    (at,) = detect.interpret(probe_output(["at", "atq"], at_version="at version 3.2.5", atd="stopped"))
    assert not at.usable and "atd is not running" in at.notes[0]
    assert detect.interpret(probe_output([])) == []


CONF = os.environ.get("MOLQ_TEST_SLURM_ACCT_CONF")
needs_slurm = pytest.mark.usefixtures("slurm_acct_conf")  # fails in CI when SLURM is missing


def run(env, tmp_path, *args):
    proc = subprocess.run([sys.executable, "-m", "molq", *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@needs_slurm
def test_detect_finds_the_real_slurm_and_saves_a_profile(molq_home, tmp_path):
    env = dict(os.environ, MOLQ_HOME=str(molq_home), SLURM_CONF=CONF)
    version = subprocess.run(["sbatch", "--version"], env=env, capture_output=True, text=True).stdout
    proc = run(env, tmp_path, "profile", "detect", "--json")
    assert proc.returncode == 0, proc.stderr
    found = {f["scheduler"]: f for f in json.loads(proc.stdout)}
    assert found["slurm"]["version"] in version and found["slurm"]["usable"] and found["slurm"]["schema"] == 1
    assert found["slurm"]["default_queue"] == os.environ["MOLQ_TEST_SLURM_PARTITIONS"].split()[0]
    assert "pbs" not in found  # qsub/qstat here belong to SLURM
    saved = run(env, tmp_path, "profile", "detect", "--save", "found", "--scheduler", "slurm")
    assert saved.returncode == 0 and "profile 'found' saved" in saved.stdout, saved.stderr
    script = run(env, tmp_path, "submit", "-p", "found", "--dry-run", "--", "true")
    assert script.returncode == 0 and "#SBATCH --partition=debug" in script.stdout
    several = run(env, tmp_path, "profile", "detect", "--save", "x")
    if len([f for f in found.values() if f["usable"]]) > 1:
        assert several.returncode == 2 and "choose with --scheduler" in several.stderr


@pytest.mark.usefixtures("ssh_test_config")  # fails in CI when the test sshd is missing
def test_detect_over_ssh(molq_home, tmp_path):
    env = dict(os.environ, MOLQ_HOME=str(molq_home))
    proc = run(env, tmp_path, "profile", "detect", "--host", os.environ["MOLQ_TEST_SSH_HOST"],
               "--transport-option", f"config_file={os.environ['MOLQ_TEST_SSH_CONFIG']}", "--json")
    assert proc.returncode == 0, proc.stderr
    assert all(f["host"] == os.environ["MOLQ_TEST_SSH_HOST"] for f in json.loads(proc.stdout))
    bad = run(env, tmp_path, "profile", "detect", "--host", "nosuchhost.invalid")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
