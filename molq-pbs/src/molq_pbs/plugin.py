"""Registers the PBS backend with molq (entry point group "molq").

Filled in by its own issue; registers nothing yet.
"""

MOLQ_PLUGIN_API = 1
