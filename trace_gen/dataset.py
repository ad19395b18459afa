"""A trace directory is a Hugging Face dataset: `datasets.load_dataset(OUT, split="train")` loads
the kept traces, `load_dataset(OUT, data_dir="rejected", split="train")` the rejected ones (with
--keep-rejected), and `--push-to-hub REPO` uploads the same files so `load_dataset(REPO)` gives the
same rows.

    OUT/README.md                      dataset card: what the run was, and its statistics
    OUT/data/train-*.parquet           kept traces (one part per committed batch)
    OUT/rejected/part-*.parquet        rejected samples (--keep-rejected)
    OUT/manifest.jsonl, run.json, stats.json   resume state, run identity, stats

`datasets` finds the kept parts by its own file-name rule (a split name at the start of a file name,
"**/train[-._ 0-9]*"), which passes over the JSON files beside them; with no such file it would take
every file and pick its JSON builder for the manifest (then fail). The card deliberately has no YAML
`configs:`: with them, datasets 5.2 caches a local directory under its base name and the card's
configs only, not the files, so a second `traces/` directory, or this one after a resume, would load
the rows cached from the first (checked: tests/trace_gen/test_dataset_layout.py). Directories written
before this layout kept their parts at the top level; `trace_parts` still finds those.
"""

import json
from pathlib import Path

import yaml

from trace_gen.errors import BackendError, UsageError

DATA_DIR = "data"
REJECTED_DIR = "rejected"
CARD = "README.md"
UPLOAD = [CARD, f"{DATA_DIR}/*.parquet", f"{REJECTED_DIR}/*.parquet", "stats.json", "run.json"]


def kept_part(name: str) -> str:
    """Where a kept part called `name` goes: OUT/data/train-<name>.parquet (the name makes it split "train")."""
    return f"{DATA_DIR}/train-{name}.parquet"


def rejected_part(name: str) -> str:
    return f"{REJECTED_DIR}/part-{name}.parquet"


def trace_parts(directory: Path, rejected: bool = False) -> list[Path]:
    """The Parquet parts of a trace directory (kept, or rejected), in commit order; both layouts."""
    directory = Path(directory)
    if rejected:
        return sorted((directory / REJECTED_DIR).glob("*.parquet"))
    return sorted((directory / DATA_DIR).glob("*.parquet")) + sorted(directory.glob("*.parquet"))


def card_text(run: dict, stats: dict | None, with_rejected: bool) -> str:
    """The dataset card: how to load it, what the run was and what it kept."""
    header = yaml.safe_dump({"tags": ["reasoning", "distillation", "synthetic"]})
    teacher = run.get("teacher", "?")
    lines = [
        f"---\n{header}---",
        "",
        f"# Reasoning traces from `{teacher}`",
        "",
        "Teacher samples verified by distill-kit's `python -m trace_gen` (one row per kept (prompt_id, "
        "sample_idx); the assistant message is `<think>…</think>` + answer).",
        "",
        "```python",
        "from datasets import load_dataset",
        'traces = load_dataset("THIS_DIR_OR_REPO", split="train")',
        'rejected = load_dataset("THIS_DIR_OR_REPO", data_dir="rejected", split="train")'
        if with_rejected
        else "# rejected samples were not kept (trace_gen --keep-rejected keeps them)",
        "```",
        "",
        f"- dataset: `{run.get('dataset', '?')}` (split `{run.get('split', '?')}`)",
        f"- sampling: `{json.dumps(run.get('sampling', {}), sort_keys=True)}`",
    ]
    if stats is None:
        lines += ["", "Generation in progress: statistics are written when the run ends."]
    else:
        keys = ("kept", "rejected", "acceptance", "prompts", "skipped", "tokens")
        lines += [
            "",
            "| " + " | ".join(keys) + " |",
            "|" + "---|" * len(keys),
            "| " + " | ".join(str(stats.get(k, "")) for k in keys) + " |",
            "",
            f"Samples by reason: `{json.dumps(stats.get('reasons', {}), sort_keys=True)}`; kept-trace "
            f"length in tokens: `{json.dumps(stats.get('num_tokens_percentiles', {}))}`.",
        ]
    return "\n".join(lines) + "\n"


def write_card(out: Path, run: dict, stats: dict | None, with_rejected: bool) -> None:
    """Write OUT/README.md atomically (a reader never sees half a card)."""
    tmp = out / (CARD + ".tmp")
    tmp.write_text(card_text(run, stats, with_rejected))
    tmp.replace(out / CARD)


def check_push(repo: str) -> None:
    """Refuse --push-to-hub REPO before any work when it cannot succeed: a malformed id, offline
    mode, or no token."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError as err:
        raise UsageError(f"--push-to-hub {repo!r} is not a hub repo id like 'user/name' ({err})") from None
    if constants.HF_HUB_OFFLINE:
        raise UsageError("--push-to-hub needs the hub, but HF_HUB_OFFLINE is set; unset it or drop the flag")
    if get_token() is None:
        raise UsageError("--push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")


def push_to_hub(out: Path, repo: str) -> str:
    """Upload the card, the Parquet parts, stats.json and run.json of OUT as the dataset repo `repo`
    (created if missing); returns its URL. The files go as they are, so the hub copy loads exactly like
    `load_dataset(OUT)`. Failure is one BackendError line; OUT stays complete, and rerunning the same
    command (nothing left to generate) pushes again."""
    from huggingface_hub import HfApi, constants

    api = HfApi()
    try:
        api.create_repo(repo, repo_type="dataset", exist_ok=True)
        api.upload_folder(
            repo_id=repo,
            repo_type="dataset",
            folder_path=str(out),
            allow_patterns=UPLOAD,
            commit_message=f"distill-kit traces ({out.name})",
        )
    except Exception as err:  # network, auth, quota: one line, the traces on disk are untouched
        first = str(err).splitlines()[0][:200] if str(err) else ""
        raise BackendError(
            f"could not push {out} to {constants.ENDPOINT} as dataset {repo} ({type(err).__name__}: "
            f"{first}); the traces in {out} are complete: rerun the same command to push again"
        ) from None
    return f"{constants.ENDPOINT}/datasets/{repo}"
