"""``python -m omnifuse`` is the ``omnifuse`` command (used by the workflow: no PATH assumptions)."""

import sys

from omnifuse.cli import main

if __name__ == "__main__":  # guarded: spawn-based worker pools re-import this module
    sys.exit(main())
