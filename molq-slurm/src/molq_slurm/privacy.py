"""Private output files on SLURM, while the user's own command keeps the user's umask.

slurmstepd creates a job's ``--output``/``--error`` files (which may lie outside the private
job directory) with the umask sbatch recorded at submission: 0644 under the usual 022, 0666
under 000, so another user could read what the job printed. sbatch takes that umask from the
``SLURM_UMASK`` environment variable when it is set, so molq runs sbatch with
``SLURM_UMASK=0077`` (the files are created 0600) and the job's wrapper sets the user's own
umask back before the user's command, which therefore creates its files as it always would.

The user's umask is the one of the process that runs sbatch: molq's own process on the login
node, or the login shell over SSH (asked once with ``umask``, when the first job is rendered).
"""

from __future__ import annotations

import logging
import os
import re

from molq.transport import Transport

__all__ = ["PRIVATE_UMASK", "LoginUmask", "restore_umask_line"]

log = logging.getLogger(__name__)

#: The umask sbatch is given when outputs are private: files 0600, directories 0700.
PRIVATE_UMASK = "0077"


def restore_umask_line(mask: int) -> str:
    """The wrapper line that gives the user's command its umask back."""
    return f"umask {mask & 0o777:04o}"


class LoginUmask:
    """The umask of the user on the submitting side, learnt once (see the module docstring).

    When it cannot be learnt (the probe failed) it is ``None`` and the user's command keeps
    the private umask: narrower than the user's, never wider.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._known = False
        self._mask: int | None = None

    def __call__(self) -> int | None:
        if not self._known:
            self._mask = self._probe()
            self._known = self._mask is not None  # a failed probe is asked again next time
        return self._mask

    def _probe(self) -> int | None:
        if not self._transport.is_remote:
            mask = os.umask(0o077)  # os.umask has no getter: set and put back
            os.umask(mask)
            return mask
        try:
            result = self._transport.run(["sh", "-c", "umask"], timeout=30)
        except Exception as exc:  # noqa: BLE001 -- no answer is no evidence: stay private
            log.warning("cannot learn the login umask (%s); jobs' commands run with umask %s", exc, PRIVATE_UMASK)
            return None
        text = result.stdout.strip()
        if result.returncode != 0 or not re.fullmatch(r"[0-7]{1,4}", text):
            log.warning("cannot learn the login umask (%r); jobs' commands run with umask %s",
                        (result.stderr or text).strip(), PRIVATE_UMASK)
            return None
        return int(text, 8) & 0o777
