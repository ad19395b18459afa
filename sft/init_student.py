"""`python -m sft init-student`: a student made of some of the teacher's decoder layers (depth pruning).

DistilBERT's initialisation / Minitron's depth pruning: the student keeps the teacher's embeddings, the chosen
decoder layers (in teacher order), the final norm and the LM head (tied embeddings stay tied), the dtype, the
tokenizer + chat template and the generation config. config.json gets the new `num_hidden_layers`, the kept
layers' `layer_types` entries and, where the config has one, a `max_window_layers` recomputed so every kept layer
keeps its sliding/full attention type. `init_student.json` records the teacher, the kept layers and both sizes.
The directory is written under a temporary name and renamed at the end: a crash never leaves half a student.

Usage:
    python -m sft init-student --teacher trace_gen/toy/assets/teacher --keep-every 2 --output-dir runs/toy_init
    python -m sft run --config configs/sft/toy_student.yaml --model_name_or_path runs/toy_init --traces DIR
    python -m sft init-student --teacher /models/Qwen3-1.7B --keep-layers 0,2,4,6,8 --output-dir runs/q3_init
The teacher is a local directory (config.json + weights); `--out` and `--output_dir` also name the output.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from sft.errors import UsageError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
SUPPORTED = "decoder-only causal LMs whose layers are `model.layers` (Llama, Qwen2, Qwen3, Mistral, ...)"


def keep_every(num_layers: int, k: int) -> list[int]:
    """Layers 0, k, 2k, ... below num_layers (exactly every k-th from 0; the last layer only if it falls on it)."""
    if k < 2:
        raise UsageError(f"--keep-every {k}: give K >= 2 (K=1 keeps all {num_layers} layers)")
    return list(range(0, num_layers, k))


def check_keep(keep: list[int], num_layers: int) -> list[int]:
    """The kept layer indices, sorted; UsageError for duplicates, out-of-range, none or all layers."""
    bad = [i for i in keep if not 0 <= i < num_layers]
    if bad:
        raise UsageError(f"--keep-layers {bad} out of range: the teacher's layers are 0..{num_layers - 1}")
    dupes = sorted({i for i in keep if keep.count(i) > 1})
    if dupes:
        raise UsageError(f"--keep-layers names layer(s) {dupes} more than once: name each layer once")
    if not keep:
        raise UsageError("--keep-layers keeps no layer: name at least one")
    if len(keep) == num_layers:
        raise UsageError(f"--keep-layers keeps all {num_layers} layers: that is the teacher; drop some")
    return sorted(keep)


def student_config_fields(config, keep: list[int]) -> dict:
    """The config fields that change: num_hidden_layers, layer_types (kept entries), max_window_layers.

    Qwen2/Qwen3 make layers i >= max_window_layers sliding (when a sliding window is on): the new value counts
    the kept layers below the old one, so a kept full layer stays full and a kept sliding one stays sliding.
    """
    fields = {"num_hidden_layers": len(keep)}
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        fields["layer_types"] = [layer_types[i] for i in keep]
    max_window_layers = getattr(config, "max_window_layers", None)
    if max_window_layers is not None:
        fields["max_window_layers"] = sum(i < max_window_layers for i in keep)
    return fields


def prune_layers(model, keep: list[int]):
    """Keep only `model.model.layers[i] for i in keep` (in place) and renumber their `layer_idx`.

    The attention modules index the KV cache by `layer_idx`: copied unchanged, kept layer 4 of a 3-layer student
    would read and write cache slot 4. Returns the model, its config updated (student_config_fields).
    """
    import torch

    layers = model.model.layers
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for new_idx, layer in enumerate(model.model.layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_idx
    for key, value in student_config_fields(model.config, keep).items():
        setattr(model.config, key, value)
    return model


def _check_architecture(config) -> None:
    """Build the model on the meta device (no weights, no memory) and check it has `model.layers`."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except ValueError:
        raise UsageError(f"{config.model_type!r} is not a causal LM; supported: {SUPPORTED}") from None
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) != config.num_hidden_layers:
        raise UsageError(f"{type(model).__name__} has no `model.layers` to prune; supported: {SUPPORTED}")


def _check_output(out_dir: Path) -> None:
    if out_dir.is_file() or (out_dir.is_dir() and any(out_dir.iterdir())):
        raise UsageError(
            f"--output-dir {out_dir} exists and is not empty: choose a new directory or remove it"
        )


def load_teacher_config(teacher_dir: Path):
    """The teacher's config (no weights); UsageError if the directory or its config.json is missing."""
    from transformers import AutoConfig

    if not teacher_dir.is_dir():
        raise UsageError(f"--teacher {teacher_dir}: no such directory; give a local model directory")
    if not (teacher_dir / "config.json").is_file():
        raise UsageError(
            f"--teacher {teacher_dir} has no config.json: give a model directory (save_pretrained)"
        )
    config = AutoConfig.from_pretrained(teacher_dir)
    if getattr(config, "num_hidden_layers", None) is None:
        raise UsageError(
            f"--teacher {teacher_dir}: config.json has no num_hidden_layers; supported: {SUPPORTED}"
        )
    return config


def init_student(teacher_dir: Path | str, keep: list[int], out_dir: Path | str) -> Path:
    """Write a student made of the teacher's layers `keep` (0-based) to out_dir; returns out_dir.

    Every check (teacher files, indices, output dir, architecture) runs before any weight is loaded.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    teacher_dir, out_dir = Path(teacher_dir), Path(out_dir)
    config = load_teacher_config(teacher_dir)
    keep = check_keep(list(keep), config.num_hidden_layers)
    _check_output(out_dir)
    _check_architecture(config)
    # without tokenizer files AutoTokenizer makes an empty tokenizer (1 token) instead of failing
    if not any((teacher_dir / name).is_file() for name in TOKENIZER_FILES):
        raise UsageError(
            f"--teacher {teacher_dir} has no tokenizer ({' / '.join(TOKENIZER_FILES)}): save it beside the weights"
        )
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)

    model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype="auto")
    teacher_params = model.num_parameters()
    prune_layers(model, keep)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would otherwise become the student directory's mode
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {
            "teacher": str(teacher_dir.resolve()),
            "teacher_num_layers": config.num_hidden_layers,
            "kept_layers": keep,
            "teacher_params": teacher_params,
            "student_params": model.num_parameters(),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        }
        (tmp / "init_student.json").write_text(json.dumps(record, indent=2) + "\n")
        os.rename(tmp, out_dir)  # replaces an empty out_dir; atomic on one filesystem
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line through the CLI's UsageError path, not argparse's usage + error
        raise UsageError(f"{message} (see `python -m sft init-student --help`)")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m sft init-student",
        description="Initialise a student from some of the teacher's decoder layers (DistilBERT / Minitron depth "
        "pruning): embeddings, the kept layers, final norm, LM head, tokenizer and generation config.",
    )
    parser.add_argument("--teacher", required=True, help="local teacher model directory (with config.json)")
    parser.add_argument(
        "--keep-layers",
        help="comma-separated 0-based teacher layer indices to keep, e.g. 0,2,4,6 (any order; kept in teacher "
        "order; no duplicates; not all, not none)",
    )
    parser.add_argument(
        "--keep-every",
        type=int,
        metavar="K",
        help="keep layers 0, K, 2K, ... (exactly every K-th from layer 0: the last layer is kept only if its "
        "index is a multiple of K)",
    )
    parser.add_argument(
        "--output-dir", "--output_dir", "--out", dest="output_dir", required=True,
        help="new or empty directory for the student (refused if it has files)",
    )  # fmt: skip
    return parser


def _parse_layers(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--keep-layers {text!r}: give comma-separated integers, e.g. 0,2,4") from None


def main(argv: list[str]) -> int:
    try:
        args = make_parser().parse_args(argv)
        if (args.keep_layers is None) == (args.keep_every is None):
            raise UsageError("give exactly one of --keep-layers 0,2,4 or --keep-every K")
        if args.keep_layers is not None:
            keep = _parse_layers(args.keep_layers)
        else:
            keep = keep_every(load_teacher_config(Path(args.teacher)).num_hidden_layers, args.keep_every)
        out = init_student(args.teacher, keep, args.output_dir)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    record = json.loads((out / "init_student.json").read_text())
    print(
        f"wrote {out}: layers {record['kept_layers']} of {record['teacher_num_layers']}, "
        f"{record['teacher_params']:,} -> {record['student_params']:,} parameters"
    )
    return 0
