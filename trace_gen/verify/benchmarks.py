"""The benchmark test sets shipped with the package, and a reader for JSONL files.

The sets live in `trace_gen/verify/data/` (provenance, licences and sha256 in its README.md), so a
clone or a wheel has them; `DISTILL_BENCHMARKS_DIR` points at another directory with the same file
names. `DISTILL_BENCHMARKS_SOURCE=hub` loads the sets that have a canonical Hugging Face Hub id
(`HUB_IDS`) with `datasets.load_dataset` instead (needs the hub; used only when asked, or when a
local file is missing).
"""

import gzip
import json
import os
from pathlib import Path

from trace_gen.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(__file__).resolve().parent / "data"
# file name -> (hub id, config, split); fields on the hub match the local files
HUB_IDS = {
    "math500.jsonl": ("HuggingFaceH4/MATH-500", None, "test"),
    "gsm8k_test.jsonl": ("openai/gsm8k", "main", "test"),
    "humaneval.jsonl.gz": ("openai/openai_humaneval", None, "test"),
}


def benchmarks_dir() -> Path:
    """The benchmark directory: $DISTILL_BENCHMARKS_DIR, else the copy shipped in the package."""
    override = os.environ.get("DISTILL_BENCHMARKS_DIR")
    return Path(override) if override else DATA_DIR


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a .jsonl or .jsonl.gz file; a bare file name is looked up in benchmarks_dir()."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = benchmarks_dir() / path
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_benchmark(file_name: str) -> list[dict]:
    """Rows of a benchmark set: the local file, or the hub copy when asked (or the file is missing).

    A set that is neither here nor loadable is one UsageError line saying where we looked."""
    path = benchmarks_dir() / file_name
    want_hub = os.environ.get("DISTILL_BENCHMARKS_SOURCE", "local") == "hub"
    if path.is_file() and not want_hub:
        return read_jsonl(path)
    if file_name not in HUB_IDS:
        raise UsageError(
            f"benchmark data not found: {path} is missing and {file_name} has no hub id; restore the "
            f"file (it ships in trace_gen/verify/data/) or point DISTILL_BENCHMARKS_DIR at a copy"
        )
    return _from_hub(file_name, path)


def _from_hub(file_name: str, path: Path) -> list[dict]:
    import datasets

    hub_id, config, split = HUB_IDS[file_name]
    try:
        return list(datasets.load_dataset(hub_id, config, split=split))
    except Exception as err:  # offline, unknown id, no permission: one line either way
        why = f"{type(err).__name__}: {str(err).splitlines()[0][:150]}" if str(err) else type(err).__name__
        if path.is_file():
            raise UsageError(
                f"could not load benchmark {hub_id} ({split}) from the hub ({why}); "
                f"unset DISTILL_BENCHMARKS_SOURCE to use {path}"
            ) from err
        raise UsageError(
            f"benchmark data not found: {path} is missing and {hub_id} could not be loaded from the hub "
            f"({why}); restore the file (it ships in trace_gen/verify/data/) or point DISTILL_BENCHMARKS_DIR "
            f"at a copy"
        ) from err
