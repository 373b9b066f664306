"""``python -m lagent``: the ``lagent`` command."""

from lagent.cli import main

raise SystemExit(main())
