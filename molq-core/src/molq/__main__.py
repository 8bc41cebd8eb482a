"""``python -m molq`` runs the command line."""

from molq.cli import main

raise SystemExit(main())
