"""``python -m omnifuse`` is the ``omnifuse`` command (used by the workflow: no PATH assumptions)."""

from omnifuse.cli import run

if __name__ == "__main__":  # guarded: spawn-based worker pools re-import this module
    run()
