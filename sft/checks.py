"""Checks that run before any model loads: settings SFTTrainer would refuse late, paths, teacher/student pairs.

Each raises sft.errors.UsageError with one line naming the problem and the fix.
"""

from pathlib import Path

import pyarrow.compute as pc
from trl import SFTConfig

from sft.config import DistillArguments
from sft.errors import UsageError


def check_model_dir(path: str | None, flag: str) -> str:
    if path is None:
        raise UsageError(f"no model given: pass {flag} PATH_OR_HUB_ID")
    if Path(path).exists() and not (Path(path) / "config.json").is_file():
        raise UsageError(f"{path} exists but has no config.json: point {flag} at a model directory")
    return path


def check_settings(args: DistillArguments, training_args: SFTConfig) -> None:
    """Combinations SFTTrainer would refuse only after the model has loaded."""
    if args.kd_source == "offline" and training_args.packing:
        raise UsageError(
            "kd_source=offline cannot pack sequences (the teacher's top-k follow each row): use --packing false "
            "(with --padding_free true for padding-free batches)"
        )
    # offline KD rows are truncated while the top-k are aligned, so padding-free batches need no max_length there
    unbounded = (
        training_args.padding_free and not training_args.packing and training_args.max_length is not None
    )
    if unbounded and args.kd_source != "offline":
        raise UsageError(
            "padding_free without packing does not truncate to max_length (SFTTrainer refuses it): add "
            "--packing true (best-fit packing, padding-free), or set --max_length null"
        )


def check_kd_pair(student_config, teacher_config, student_tokenizer, teacher_tokenizer) -> None:
    """Token-level KD compares the two distributions id by id: every token of the smaller tokenizer must have
    the same id in the larger one (Qwen2.5 and Qwen3 qualify; R1-Distill-Qwen does not), and both models the
    same number of embedding rows."""
    s_rows = student_config.get_text_config().vocab_size
    t_rows = teacher_config.get_text_config().vocab_size
    small, large = sorted((student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()), key=len)
    if any(large.get(token) != i for token, i in small.items()):
        raise UsageError(
            f"student and teacher tokenizers differ (student {len(student_tokenizer):,} tokens, {s_rows:,} "
            f"embedding rows; teacher {len(teacher_tokenizer):,} tokens, {t_rows:,} rows): token-level KD needs "
            "one tokenizer; train on the teacher's traces with --kd_source none, or use a teacher of the student's family"
        )
    if s_rows != t_rows:
        raise UsageError(
            f"student and teacher share a tokenizer but not the embedding size (student {s_rows:,} rows, teacher "
            f"{t_rows:,}): online KD compares whole rows; use --kd_source offline with the teacher's top-k traces "
            f"(token ids fit both), or a teacher with {s_rows:,} rows"
        )


def check_topk_ids(dataset, student_config) -> None:
    """The teacher's stored top-k ids index the student's logits: they must be below its embedding rows (a
    152,064-row teacher's top-k from a trained model lie in the 151,665 shared tokens; padding rows may not)."""
    if "topk_ids" not in dataset.column_names:
        return  # prepare_offline_kd names the missing columns
    rows = student_config.get_text_config().vocab_size
    top = pc.max(pc.list_flatten(dataset.data.column("topk_ids"))).as_py()
    if top is not None and top >= rows:
        raise UsageError(
            f"the traces' teacher top-k hold token id {top:,} but the student has {rows:,} embedding rows: "
            "regenerate them with a teacher of the student's vocabulary, or use --kd_source none"
        )


def check_online_kd(args: DistillArguments, training_args: SFTConfig, student_config, teacher_config) -> list:
    """Feature terms and routed teachers against the models' shapes and the batch layout; returns the
    (student, teacher) layer pairs of the hidden / attention terms ([] when both are off)."""
    from sft.config import layer_map_kind
    from sft.feature_losses import layer_map

    packed = training_args.packing or training_args.padding_free
    if args.teacher_column and packed:
        raise UsageError(
            "routing teachers per row (--teacher_column) needs one row per batch row: add --packing false "
            "--padding_free false (or mix them with --teacher_weights)"
        )
    if (args.kd_attn_weight > 0 or args.kd_rel_weight > 0) and packed:
        raise UsageError(
            "attention KD (per-sequence T x T maps) and relational KD (one pooled vector per sequence) need one "
            "sequence per batch row, which packed / padding-free batches do not have: add --packing false "
            "--padding_free false"
        )
    s_text, t_text = student_config.get_text_config(), teacher_config.get_text_config()
    if (
        args.kd_hidden_weight > 0
        and args.kd_hidden_loss == "cosine"
        and s_text.hidden_size != t_text.hidden_size
    ):
        raise UsageError(
            f"kd_hidden_loss cosine needs equal widths, student {s_text.hidden_size} vs teacher "
            f"{t_text.hidden_size}: use --kd_hidden_loss mse (FitNets: trains a projection)"
        )
    if not (args.kd_hidden_weight > 0 or args.kd_attn_weight > 0):
        return []
    kind, layers = layer_map_kind(args.kd_layer_map)
    try:
        return layer_map(kind, s_text.num_hidden_layers, t_text.num_hidden_layers, layers)
    except ValueError as err:
        raise UsageError(f"kd_layer_map {args.kd_layer_map!r}: {err}") from None
