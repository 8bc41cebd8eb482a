"""``molq profile detect``: which schedulers a machine has, found with one shell round trip.

The probe only runs the schedulers' own read-only client commands (version, partitions or
queues); what they print is parsed here by small pure functions, so each is tested on real
output. Formats:

* SLURM: ``sbatch --version`` prints ``slurm 23.02.1`` (``slurm-wlm 22.05.8`` from Debian's
  package); ``sinfo -h -o %P`` lists partitions, the default one marked ``*``.
* PBS Pro / OpenPBS: ``qstat --version`` prints ``pbs_version = 2022.1.1`` (older releases
  ``pbs_version = PBSPro_9.2.0.81361``); Torque prints ``Version: 6.1.2`` (``version: 2.4.16``
  in old releases). ``qmgr -c 'list server'`` shows ``default_queue = workq``. SLURM's Torque
  compatibility package installs a ``qstat`` of its own, which prints neither.
* LSF: ``lsid`` starts with the product and version (``IBM Spectrum LSF Standard 10.1.0.13,
  Apr 15 2022``) and names the cluster (``My cluster name is ...``); ``bparams`` shows
  ``Default Queues:  normal``.
* at: ``at -V`` prints ``at version 3.2.5``; atd must be running for jobs to start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# One round trip: every section is delimited, so a command that fails or hangs (bounded by
# `timeout` where the host has it) leaves only its own section empty.
PROBE = r"""
t() { if command -v timeout >/dev/null 2>&1; then timeout 15 "$@"; else "$@"; fi; }
section() { printf '@@molq %s\n' "$1"; }
for c in sbatch sinfo qsub qstat qmgr bsub bjobs lsid bparams at atq; do
  command -v "$c" >/dev/null 2>&1 && printf 'have %s\n' "$c"
done
if command -v sbatch >/dev/null 2>&1; then
  section slurm-version; t sbatch --version 2>&1
  section slurm-partitions; t sinfo -h -o %P 2>&1
fi
if command -v qstat >/dev/null 2>&1; then
  section pbs-version; t qstat --version 2>&1
  if command -v qmgr >/dev/null 2>&1; then section pbs-server; t qmgr -c 'list server' 2>&1; fi
fi
if command -v lsid >/dev/null 2>&1; then
  section lsf-id; t lsid 2>&1
  if command -v bparams >/dev/null 2>&1; then section lsf-params; t bparams 2>&1; fi
fi
if command -v at >/dev/null 2>&1; then
  section at-version; at -V </dev/null 2>&1
  section atd; if pgrep -x atd >/dev/null 2>&1; then echo running; else echo stopped; fi
fi
section end
"""


@dataclass
class Found:
    """One scheduler found on a host."""

    scheduler: str  # molq's scheduler name: slurm, pbs, lsf, at
    version: str | None = None
    flavor: str | None = None  # pbspro or torque
    default_queue: str | None = None
    notes: list[str] = field(default_factory=list)
    usable: bool = True


def sections(text: str) -> tuple[set[str], dict[str, str]]:
    """The commands found (``have NAME`` lines) and each section's text."""
    have: set[str] = set()
    parts: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("@@molq "):
            current = line.split(" ", 1)[1].strip()
            parts[current] = []
        elif current is None:
            if line.startswith("have "):
                have.add(line[5:].strip())
        else:
            parts[current].append(line)
    return have, {k: "\n".join(v).strip() for k, v in parts.items()}


def slurm_version(text: str) -> str | None:
    match = re.search(r"^slurm(?:-wlm)?\s+(\d+\.\d+(?:\.\d+)?\S*)", text, re.MULTILINE)
    return match.group(1) if match else None


def slurm_default_partition(text: str) -> str | None:
    for line in text.split():
        if line.endswith("*") and len(line) > 1:
            return line[:-1]
    return None


def pbs_version(text: str) -> tuple[str, str] | None:
    """(flavor, version) from ``qstat --version``, or None when it is not PBS."""
    match = re.search(r"pbs_version\s*=\s*(?:PBSPro_)?(\S+)", text)
    if match:
        return "pbspro", match.group(1)
    match = re.search(r"^\s*version:\s*(\d+(?:\.\d+)+)", text, re.MULTILINE | re.IGNORECASE)
    if match:
        return "torque", match.group(1)
    return None


def pbs_default_queue(text: str) -> str | None:
    match = re.search(r"default_queue\s*=\s*(\S+)", text)
    return match.group(1) if match else None


def lsf_version(text: str) -> str | None:
    match = re.search(r"^(?:IBM Spectrum |Platform )?LSF\b[^\n]*?(\d+(?:\.\d+)+)", text, re.MULTILINE)
    return match.group(1) if match else None


def lsf_cluster(text: str) -> str | None:
    match = re.search(r"^My cluster name is (\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


def lsf_default_queue(text: str) -> str | None:
    match = re.search(r"^Default Queues:\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


def at_version(text: str) -> str | None:
    match = re.search(r"at version (\S+)", text)
    return match.group(1) if match else None


def interpret(text: str) -> list[Found]:
    """What the probe's output says about the host."""
    have, part = sections(text)
    found: list[Found] = []
    if "sbatch" in have:
        version = slurm_version(part.get("slurm-version", ""))
        item = Found("slurm", version, default_queue=slurm_default_partition(part.get("slurm-partitions", "")))
        if version is None:
            item.usable = False
            item.notes.append(f"sbatch --version said: {_first_line(part.get('slurm-version'))}")
        elif item.default_queue is None:
            item.notes.append(f"sinfo names no default partition: {_first_line(part.get('slurm-partitions'))}")
        found.append(item)
    if "qstat" in have or "qsub" in have:
        pbs = pbs_version(part.get("pbs-version", ""))
        if pbs is not None:
            flavor, version = pbs
            found.append(Found("pbs", version, flavor=flavor,
                               default_queue=pbs_default_queue(part.get("pbs-server", ""))))
        elif "sbatch" in have:
            found[0].notes.append("qsub/qstat here are SLURM's Torque compatibility wrappers, not PBS")
        else:
            found.append(Found("pbs", None, usable=False,
                               notes=[f"qstat --version said: {_first_line(part.get('pbs-version'))}"]))
    if "lsid" in have or "bsub" in have:
        lsid = part.get("lsf-id", "")
        item = Found("lsf", lsf_version(lsid), default_queue=lsf_default_queue(part.get("lsf-params", "")))
        cluster = lsf_cluster(lsid)
        if cluster:
            item.notes.append(f"LSF cluster {cluster}")
        if item.version is None:
            item.usable = False
            item.notes.append(f"lsid said: {_first_line(lsid)}")
        found.append(item)
    if "at" in have and "atq" in have:
        item = Found("at", at_version(part.get("at-version", "")))
        if part.get("atd", "") != "running":
            item.usable = False
            item.notes.append("atd is not running: at jobs would never start")
        found.append(item)
    return found


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:120] if lines else "(nothing)"
