"""Entry point: `python -m eval_harness [compare] ...` (see eval_harness/cli.py)."""

import sys

from eval_harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
