"""molq backend: the OpenSSH transport.

>>> from molq_ssh import SshTransport, SshTransportOptions
>>> with SshTransport(SshTransportOptions(host="login.example.org")) as t:   # doctest: +SKIP
...     print(t.run(["hostname"]).stdout)
"""

from molq_ssh._version import __version__
from molq_ssh.options import SshTransportOptions
from molq_ssh.transport import SshTransport

__all__ = ["__version__", "SshTransport", "SshTransportOptions"]
