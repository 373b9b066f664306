"""``python -m lagent.cli``."""

import sys

from lagent.cli import main

sys.exit(main())
