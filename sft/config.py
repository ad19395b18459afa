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
