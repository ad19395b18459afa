"""Entry point: `python -m sft run ...` (see sft/cli.py)."""

import logging
import sys

if __name__ == "__main__":
    # bitsandbytes logs on import that the optional `kernels` package is missing (harmless, it falls back to
    # its own CPU path): keep stderr for the one error line of a bad input
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    from sft.cli import main

    sys.exit(main())
