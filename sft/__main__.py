"""Entry point: `python -m sft run ...` (see sft/cli.py)."""

import sys

from sft.cli import main

if __name__ == "__main__":
    sys.exit(main())
