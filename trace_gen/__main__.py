"""Entry point: `python -m trace_gen ...` (see trace_gen/cli.py)."""

import sys

from trace_gen.cli import main

if __name__ == "__main__":
    sys.exit(main())
