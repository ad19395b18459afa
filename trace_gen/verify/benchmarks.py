"""Where the shared, read-only benchmark sets live, and a reader for their JSONL files.

The sets sit at `../shared/benchmarks` relative to the repository root (see its README.md);
`DISTILL_BENCHMARKS_DIR` overrides that location.
"""

import gzip
import json
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def benchmarks_dir() -> Path:
    """The benchmark directory: $DISTILL_BENCHMARKS_DIR, else <repo root>/../shared/benchmarks."""
    override = os.environ.get("DISTILL_BENCHMARKS_DIR")
    return Path(override) if override else (REPO_ROOT.parent / "shared" / "benchmarks").resolve()


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a .jsonl or .jsonl.gz file; a bare file name is looked up in benchmarks_dir()."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = benchmarks_dir() / path
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
