"""Entry point: `python -m sft run ...` (see sft/cli.py). Importing the package installs sft/__init__.py's filter
for bitsandbytes' harmless kernels-hub notice, so stderr keeps only a bad input's one error line."""

import sys

if __name__ == "__main__":
    from sft.cli import main

    sys.exit(main())
