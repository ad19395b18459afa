"""Arguments of `python -m sft run`: ours (DistillArguments) beside TRL's SFTConfig and ModelConfig.

Fine-tuning mode follows TRL's ModelConfig: `use_peft` → LoRA, `use_peft` + `load_in_4bit` → QLoRA,
neither → full fine-tuning. YAML keys mirror the dataclass fields; CLI flags override the file.
"""

from dataclasses import dataclass, field
from pathlib import Path

from sft.teachers import parse_teachers

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "sft" / "toy_student.yaml"


def parse_teacher_weights(text: str) -> dict[str, float]:
    """`"A=1,B=0.5"` -> {"A": 1.0, "B": 0.5}; raises ValueError (one line) on a bad entry or weights."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not name.strip() or not weight >= 0:  # also NaN
            raise ValueError(
                f"trace_teacher_weights entry {item!r}: write TEACHER=WEIGHT with a weight >= 0, e.g. 'A=1,B=0.5'"
            )
        weights[name.strip()] = weight
    if not any(w > 0 for w in weights.values()):
        raise ValueError(f"trace_teacher_weights {text!r}: at least one teacher needs a weight > 0")
    return weights


@dataclass
class DistillArguments:
    traces: str = field(
        default="runs/demo/traces",
        metadata={
            "help": "Traces directory written by `python -m trace_gen` (Parquet parts), or a Parquet/JSONL file; "
            "several separated by commas (e.g. one trace_gen run per teacher)."
        },
    )
    keep_verdicts: list[str] = field(
        default_factory=lambda: ["correct", "passed"],
        metadata={"help": "Train only on rows whose `verdict` is one of these; `all` trains on every row."},
    )
    include_rejected: bool = field(
        default=False,
        metadata={
            "help": "Also read `<traces>/rejected/` (rows the filter dropped), e.g. for an unfiltered ablation."
        },
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many training rows (after filtering)."}
    )
    merge_adapter: bool = field(
        default=True,
        metadata={"help": "After LoRA/QLoRA training, also save the merged model to `<output_dir>/merged`."},
    )
    lint: bool = field(
        default=True,
        metadata={"help": "Run the template lint (sft/lint.py) before training; its errors stop the run."},
    )
    lint_only: bool = field(
        default=False, metadata={"help": "Print the template lint report and exit without training."}
    )
    lint_samples: int = field(
        default=64, metadata={"help": "Rows the lint renders (mask checks and the truncation rate)."}
    )
    export_4bit: bool = field(
        default=False,
        metadata={
            "help": "Also save a bitsandbytes nf4 4-bit copy of the final model to `<output_dir>/merged-4bit` "
            "(needs the `qlora` extra)."
        },
    )
    # --- token-level distillation (sft/kd_trainer.py) ---------------------------------------------
    kd_source: str = field(
        default="none",
        metadata={
            "help": "Teacher distribution for the KD term: `none` (plain SFT), `offline` (top-k log-probs stored "
            "in the traces by trace_gen), `online` (a frozen teacher model run beside the student).",
            "choices": ["none", "offline", "online"],
        },
    )
    kd_alpha: float = field(
        default=0.0,
        metadata={
            "help": "Mix `loss = (1 - kd_alpha) * ce + kd_alpha * kd`, i.e. w_ce = 1 - kd_alpha and w_kd = kd_alpha "
            "in the full sum `w_ce*ce + w_kd*kd + kd_hidden_weight*hidden + kd_attn_weight*attn + kd_rel_weight*rel`. "
            "0 with kd_source=none is plain SFT; 0 with a source trains on CE only and logs the KD divergence."
        },
    )
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Online teacher (same tokenizer/vocabulary as the student)."}
    )
    teacher_dtype: str = field(
        default="bfloat16",
        metadata={"help": "Online teacher dtype.", "choices": ["bfloat16", "float16", "float32"]},
    )
    teacher_load_in_4bit: bool = field(
        default=False, metadata={"help": "Load the online teacher in bitsandbytes nf4 4-bit (frozen)."}
    )
    kd_beta: float = field(
        default=0.0,
        metadata={
            "help": "Divergence: 0 forward KL(teacher || student), 1 reverse KL, in between generalized JSD(beta)."
        },
    )
    kd_temperature: float = field(
        default=1.0, metadata={"help": "KD temperature T at the first step (the KD term is scaled by T²)."}
    )
    kd_temperature_end: float | None = field(
        default=None,
        metadata={"help": "Anneal T linearly from kd_temperature to this at the last step (e.g. 5 → 1)."},
    )
    kd_chunk_size: int = field(
        default=256,
        metadata={
            "help": "Tokens per chunk of the fused lm_head + KD loss (memory: a few chunk x vocab fp32)."
        },
    )
    kd_confidence_weighted: bool = field(
        default=False,
        metadata={
            "help": "Per-token alpha = kd_alpha * teacher's top-1 probability: more hard-label weight where the "
            "teacher is unsure."
        },
    )

    # --- feature distillation (sft/kd_trainer.py; needs kd_source=online) -----------------------------
    # loss = (1 - kd_alpha)*ce + kd_alpha*kd + kd_hidden_weight*hidden + kd_attn_weight*attn + kd_rel_weight*rel
    kd_hidden_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the hidden-state term over the `kd_layer_map` pairs (0 = off): `kd_hidden_loss`."
        },
    )
    kd_hidden_loss: str = field(
        default="cosine",
        metadata={
            "help": "`cosine` (DistilBERT: 1 - cos, needs equal widths) or `mse` (FitNets: through a trained linear "
            "projection when the widths differ; the projections are checkpointed, not exported).",
            "choices": ["cosine", "mse"],
        },
    )
    kd_layer_map: str = field(
        default="uniform",
        metadata={
            "help": "Student->teacher layer pairs for the hidden and attention terms: `uniform`, `pkd-skip`, "
            "`pkd-last`, or an explicit list of teacher layers, one per student layer, e.g. `2,4,6,8` (1-based)."
        },
    )
    kd_attn_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the TinyBERT attention-map term over the `kd_layer_map` pairs (0 = off). Those "
            "layers' attention probabilities are captured (eager attention there, O(B*heads*T^2) memory per "
            "layer); needs --packing false --padding_free false."
        },
    )
    kd_rel_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of relational KD (RKD distance + angle, equally weighted) between the batch's pooled "
            "final hidden states (0 = off; needs batches of >= 2 rows, >= 3 for the angle term; --packing false "
            "--padding_free false)."
        },
    )
    kd_hidden_start_step: int = field(
        default=0, metadata={"help": "Global step from which the hidden term is computed (before: off)."}
    )
    kd_attn_start_step: int = field(
        default=0, metadata={"help": "Global step from which the attention term is computed (before: off)."}
    )
    kd_rel_start_step: int = field(
        default=0, metadata={"help": "Global step from which the relational term is computed (before: off)."}
    )
    teachers: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Several online teachers for token-level KD, `name=PATH` entries (replaces "
            "teacher_model_name_or_path); mixed by `teacher_weights` or routed per row by `teacher_column`."
        },
    )
    teacher_weights: list[float] = field(
        default_factory=list,
        metadata={
            "help": "One weight per `teachers` entry: the KD term is sum_i w_i * kd_i / sum_i w_i (every row, "
            "every teacher)."
        },
    )
    teacher_column: str | None = field(
        default=None,
        metadata={
            "help": "Traces column naming each row's teacher (one of the `teachers` names): each row is "
            "distilled from its own teacher only. Needs --packing false --padding_free false."
        },
    )

    def has_feature_terms(self) -> bool:
        return self.kd_hidden_weight > 0 or self.kd_attn_weight > 0 or self.kd_rel_weight > 0

    # --- training strategies (sft/self_distill.py, sft/mutual_trainer.py, sft/data.py) --------------------
    kd_self: str = field(
        default="none",
        metadata={
            "help": "Self-distillation teacher for --kd_source online: `ema` = a frozen copy of the student whose "
            "weights follow an EMA of the student's (merged LoRA weights for LoRA) after every optimizer step; "
            "`none` = the model at --teacher_model_name_or_path.",
            "choices": ["none", "ema"],
        },
    )
    kd_ema_decay: float = field(
        default=0.99,
        metadata={
            "help": "EMA teacher: t = decay * t + (1 - decay) * student after each step. 0.99 averages over ~100 "
            "steps (half-life 69), sized for runs of a few hundred steps; 0.999 suits thousands."
        },
    )
    mutual_peer: str | None = field(
        default=None,
        metadata={
            "help": "Deep mutual learning: train a peer beside the student, each distilled toward the other "
            "(`true` = a copy of the student's init, with its own LoRA adapter; or a model PATH). Saved to "
            "<output_dir>/peer. Needs --kd_source none."
        },
    )
    mutual_weight: float = field(
        default=1.0,
        metadata={"help": "Mutual learning: loss = ce + mutual_weight * KL(other || self), per model."},
    )
    trace_teacher_weights: str | None = field(
        default=None,
        metadata={
            "help": "Sample the trace rows by their `teacher` column, e.g. 'A=1,B=0.5' (shares of the kept rows, "
            "none repeated; 0 drops a teacher; name every teacher present). Several runs: --traces DIR_A,DIR_B."
        },
    )

    def _check_strategies(self):
        if self.kd_self == "ema" and self.kd_source != "online":
            raise ValueError(
                "--kd_self ema is an online teacher: add --kd_source online (and --kd_alpha > 0)"
            )
        if self.kd_self == "ema" and (self.teacher_model_name_or_path or self.teacher_load_in_4bit):
            raise ValueError(
                "--kd_self ema builds its teacher from the student: drop --teacher_model_name_or_path / "
                "--teacher_load_in_4bit (or use --kd_self none for a fixed or born-again teacher)"
            )
        if not 0.0 < self.kd_ema_decay < 1.0:
            raise ValueError(f"kd_ema_decay must be in (0, 1), got {self.kd_ema_decay}")
        if self.mutual_peer is not None and self.kd_source != "none":
            raise ValueError(
                f"--mutual_peer distils the two models toward each other; kd_source={self.kd_source} would add "
                "another teacher: use --kd_source none"
            )
        if self.mutual_weight < 0:
            raise ValueError(f"mutual_weight must be >= 0, got {self.mutual_weight}")
        if self.trace_teacher_weights is not None:
            parse_teacher_weights(self.trace_teacher_weights)

    def __post_init__(self):
        self._check_strategies()
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if self.kd_source == "none" and self.kd_alpha > 0:
            raise ValueError("kd_alpha > 0 needs a teacher: set --kd_source offline or online")
        if (
            self.kd_source == "online"
            and not (self.teacher_model_name_or_path or self.teachers)
            and self.kd_self == "none"
        ):
            raise ValueError(
                "kd_source=online needs --teacher_model_name_or_path (or --teachers name=PATH ...)"
            )
        if self.kd_source != "online" and (self.teacher_model_name_or_path or self.teacher_load_in_4bit):
            raise ValueError(
                "teacher_model_name_or_path / teacher_load_in_4bit only apply to kd_source=online"
            )
        if self.kd_confidence_weighted and self.kd_source == "none":
            raise ValueError("kd_confidence_weighted needs a KD source (--kd_source offline|online)")
        if not 0.0 <= self.kd_beta <= 1.0:
            raise ValueError(f"kd_beta must be in [0, 1], got {self.kd_beta}")
        if self.kd_temperature <= 0 or (self.kd_temperature_end is not None and self.kd_temperature_end <= 0):
            raise ValueError("kd_temperature and kd_temperature_end must be > 0")
        if self.kd_chunk_size <= 0:
            raise ValueError(f"kd_chunk_size must be > 0, got {self.kd_chunk_size}")
        self._check_feature_distillation()

    def _check_feature_distillation(self):
        weights = {"kd_hidden_weight": self.kd_hidden_weight, "kd_attn_weight": self.kd_attn_weight}
        weights["kd_rel_weight"] = self.kd_rel_weight
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (0 = off), got {value}")
        starts = (self.kd_hidden_start_step, self.kd_attn_start_step, self.kd_rel_start_step)
        if min(starts) < 0:
            raise ValueError(f"kd_*_start_step must be >= 0, got {starts}")
        if self.has_feature_terms() and self.kd_source != "online":
            raise ValueError(
                "kd_hidden_weight / kd_attn_weight / kd_rel_weight need a teacher model run beside the student: "
                "set --kd_source online --teacher_model_name_or_path PATH"
            )
        layer_map_kind(self.kd_layer_map)  # raises on a malformed map
        teachers = parse_teachers(self.teachers)
        if teachers and self.kd_source != "online":
            raise ValueError(
                "teachers need --kd_source online (token-level KD against models run beside the student)"
            )
        if teachers and self.teacher_model_name_or_path:
            raise ValueError(
                "give one teacher (--teacher_model_name_or_path) or --teachers name=PATH ..., not both"
            )
        if teachers and bool(self.teacher_weights) == bool(self.teacher_column):
            raise ValueError(
                "several teachers need either --teacher_weights (one float each: mix) or --teacher_column (route "
                "each row): set exactly one"
            )
        if (self.teacher_weights or self.teacher_column) and not teachers:
            raise ValueError("teacher_weights / teacher_column need --teachers name=PATH ...")
        if self.teacher_weights and (
            len(self.teacher_weights) != len(teachers) or min(self.teacher_weights) < 0
        ):
            raise ValueError(
                f"teacher_weights needs one weight >= 0 per teacher ({len(teachers)}), got {self.teacher_weights}"
            )
        if self.teacher_weights and sum(self.teacher_weights) <= 0:
            raise ValueError(f"teacher_weights must not all be 0, got {self.teacher_weights}")
        if teachers and self.has_feature_terms():
            raise ValueError(
                "feature terms (hidden / attn / rel) take one teacher: use --teacher_model_name_or_path, not --teachers"
            )
        if teachers and self.kd_confidence_weighted:
            raise ValueError("kd_confidence_weighted takes one teacher: use --teacher_model_name_or_path")

    def teacher_paths(self) -> dict[str, str]:
        """{name: path} of the online teachers: `teachers`, or the single one as `default` ({} when offline)."""
        if self.teachers:
            return parse_teachers(self.teachers)
        return {"default": self.teacher_model_name_or_path} if self.teacher_model_name_or_path else {}


def layer_map_kind(spec: str) -> tuple[str, list[int] | None]:
    """`kd_layer_map` -> (kind, layers) for sft.feature_losses.layer_map: a named map, or `list` + teacher layers."""
    if spec in ("uniform", "pkd-skip", "pkd-last"):
        return spec, None
    parts = [p.strip() for p in spec.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError(
            f"kd_layer_map must be uniform, pkd-skip, pkd-last or a list of teacher layers like 2,4,6, got {spec!r}"
        )
    return "list", [int(p) for p in parts]
