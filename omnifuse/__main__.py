"""``python -m omnifuse`` is the ``omnifuse`` command (used by the workflow: no PATH assumptions)."""

import sys

from omnifuse.cli import main

sys.exit(main())
