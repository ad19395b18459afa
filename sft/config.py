"""Arguments of `python -m sft run`: ours (DistillArguments) beside TRL's SFTConfig and ModelConfig.

Fine-tuning mode follows TRL's ModelConfig: `use_peft` → LoRA, `use_peft` + `load_in_4bit` → QLoRA,
neither → full fine-tuning. YAML keys mirror the dataclass fields; CLI flags override the file.
"""

from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "sft" / "toy_student.yaml"


@dataclass
class DistillArguments:
    traces: str = field(
        default="runs/demo/traces",
        metadata={
            "help": "Traces directory written by `python -m trace_gen` (Parquet parts), or a Parquet/JSONL file."
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
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into an --output_dir that holds a finished run (run_summary.json); refused otherwise "
            "(transformers 5 dropped TrainingArguments' flag of this name)."
        },
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
            "help": "Mix `loss = (1 - kd_alpha) * ce + kd_alpha * kd`. 0 with kd_source=none is plain SFT; 0 with "
            "a source trains on CE only and logs the KD divergence."
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

    def __post_init__(self):
        if not 0.0 <= self.kd_alpha <= 1.0:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha}")
        if self.kd_source == "none" and self.kd_alpha > 0:
            raise ValueError("kd_alpha > 0 needs a teacher: set --kd_source offline or online")
        if self.kd_source == "online" and not self.teacher_model_name_or_path:
            raise ValueError("kd_source=online needs --teacher_model_name_or_path")
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
        if self.max_samples is not None and self.max_samples <= 0:
            raise ValueError(
                f"--max_samples {self.max_samples} leaves no rows: pass a positive number, or omit it"
            )
        if self.lint_samples <= 0:
            raise ValueError(
                f"--lint_samples {self.lint_samples}: must be > 0 (or --lint false to skip the lint)"
            )
        if self.kd_chunk_size <= 0:
            raise ValueError(f"kd_chunk_size must be > 0, got {self.kd_chunk_size}")
