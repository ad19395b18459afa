"""Arguments of `python -m sft on-policy`: ours (OnPolicyArguments) beside TRL's DistillationConfig and ModelConfig.

TRL's `DistillationConfig` already holds the generation and divergence knobs this stage uses, so they are
not redefined here: `teacher_model_name_or_path` (the teacher), `beta` (0 forward KL, 1 reverse KL, in
between JSD(beta); default 1 = reverse KL), `temperature` (of the student's SAMPLING only: the divergence
has its own `kd_temperature` here), `top_p`/`top_k`, `max_completion_length` (new tokens per sample),
`use_vllm` + `vllm_mode` (`colocate` or `server`), and the usual Trainer fields. `ModelConfig` picks LoRA
(`use_peft`), QLoRA (`use_peft` + `load_in_4bit`) or full fine-tuning of the student, as in `sft run`.
"""

from dataclasses import dataclass, field

from sft.teachers import parse_teachers

URL_PREFIXES = ("http://", "https://")


@dataclass
class OnPolicyArguments:
    prompts: str = field(
        default="toy",
        metadata={
            "help": "Prompt set: `toy` (the built-in toy task's train split); a problems file in trace_gen's input "
            "format (.jsonl/.parquet with a `problem_column`, or a saved dataset directory), turned into chats the "
            "way trace_gen does; or a trace_gen traces directory, whose prompts are the `messages` before the last "
            "assistant turn (that turn is the off-policy completion when lmbda < 1)."
        },
    )
    split: str = field(default="train", metadata={"help": "Dataset split (saved or hub datasets)."})
    problem_column: str = field(default="problem", metadata={"help": "Column holding the problem text."})
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message (problems)."})
    instruction: str | None = field(
        default=None,
        metadata={
            "help": "Text appended to each problem (default: trace_gen's R1 instruction to reason step by step and "
            "box the answer; '' for none)."
        },
    )
    keep_verdicts: list[str] = field(
        default_factory=lambda: ["correct", "passed"],
        metadata={
            "help": "Traces directory: keep rows whose `verdict` is one of these (`all` keeps every row). Their "
            "assistant turns are the off-policy completions."
        },
    )
    max_prompts: int | None = field(default=None, metadata={"help": "Use at most this many prompts (rows)."})
    # --- GKD knobs --------------------------------------------------------------------------------------
    lmbda: float = field(
        default=1.0,
        metadata={
            "help": "GKD's lambda: the fraction of generation batches whose completions the student samples "
            "(on-policy); the others train on the dataset's own completions (off-policy KD, needs a traces "
            "directory). 1 = fully on-policy, as in Qwen3's on-policy stage and GKD's best runs; 0 = off-policy KD."
        },
    )
    samples_per_prompt: int = field(
        default=1,
        metadata={
            "help": "Student samples per prompt in a generation batch (GKD and TRL use 1); the generation batch "
            "(per_device_train_batch_size x processes x gradient_accumulation_steps) must be a multiple."
        },
    )
    kd_temperature: float = field(
        default=1.0,
        metadata={
            "help": "Temperature T of the divergence (both logits / T, loss x T^2). Sampling uses `temperature`; "
            "T = 1 scores the student's own sampling distribution at T = 1 (GKD, Qwen3)."
        },
    )
    teacher_top_k: int = field(
        default=0,
        metadata={
            "help": "Teacher distribution per token: 0 = the full vocabulary (in-process teacher); K = its top K "
            "log-probs plus one tail bucket with the remaining mass (sft.chunked_kd's offline path). A server "
            "teacher needs 1 <= K <= the server's --max-logprobs (vLLM's default 20)."
        },
    )
    kd_chunk_size: int = field(
        default=256,
        metadata={
            "help": "Tokens per chunk of the fused lm_head + divergence (a few chunk x vocab fp32 buffers)."
        },
    )
    # --- teachers ---------------------------------------------------------------------------------------
    teacher_dtype: str = field(
        default="bfloat16",
        metadata={"help": "In-process teacher dtype.", "choices": ["bfloat16", "float16", "float32"]},
    )
    teacher_load_in_4bit: bool = field(
        default=False,
        metadata={
            "help": "Load in-process teachers in bitsandbytes nf4 4-bit (frozen; needs the qlora extra)."
        },
    )
    teachers: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Several teachers, routed per example by `teacher_column`: `name=PATH_OR_URL` entries (a model "
            "directory / hub id, or an OpenAI-compatible server's base URL). All must share the student's "
            "vocabulary. Replaces teacher_model_name_or_path."
        },
    )
    teacher_column: str | None = field(
        default=None,
        metadata={"help": "Dataset column naming each row's teacher (one of the `teachers` names)."},
    )
    teacher_server_model: str | None = field(
        default=None,
        metadata={"help": "Served model name of a server teacher (default: the first of its /v1/models)."},
    )
    teacher_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding a server teacher's API key (sent only as a header)."},
    )
    teacher_concurrency: int = field(
        default=16, metadata={"help": "Scoring requests in flight to a server teacher."}
    )
    # --- samples that never close the reasoning ---------------------------------------------------------
    think_close: str = field(
        default="</think>", metadata={"help": "The tag that ends the reasoning in a student sample."}
    )
    unclosed_think: str = field(
        default="keep",
        metadata={
            "help": "Student samples that never write `think_close` within max_completion_length are counted "
            "(`think/unclosed_ratio`) and then: `keep` = trained on like any other (the teacher grades every token, "
            "run-on reasoning included; dropping them would bias training towards short samples), `drop` = left "
            "out of the loss.",
            "choices": ["keep", "drop"],
        },
    )
    # --- outputs and checks (as in `sft run`) -------------------------------------------------------------
    merge_adapter: bool = field(
        default=True,
        metadata={"help": "After LoRA/QLoRA training, also save the merged model to `<output_dir>/merged`."},
    )
    lint: bool = field(
        default=True,
        metadata={
            "help": "Run the on-policy lint (templates, vocabularies, budgets) first; errors stop the run."
        },
    )
    lint_only: bool = field(default=False, metadata={"help": "Print the lint report and exit."})
    lint_samples: int = field(default=64, metadata={"help": "Prompts (and trace rows) the lint renders."})

    def __post_init__(self):
        if not 0.0 <= self.lmbda <= 1.0:
            raise ValueError(f"lmbda must be in [0, 1], got {self.lmbda}")
        if self.samples_per_prompt < 1:
            raise ValueError(f"samples_per_prompt must be >= 1, got {self.samples_per_prompt}")
        if self.kd_temperature <= 0:
            raise ValueError(f"kd_temperature must be > 0, got {self.kd_temperature}")
        if self.teacher_top_k < 0:
            raise ValueError(f"teacher_top_k must be >= 0 (0 = full vocabulary), got {self.teacher_top_k}")
        if self.kd_chunk_size <= 0:
            raise ValueError(f"kd_chunk_size must be > 0, got {self.kd_chunk_size}")
        if self.teacher_concurrency < 1:
            raise ValueError(f"teacher_concurrency must be >= 1, got {self.teacher_concurrency}")
        parse_teachers(self.teachers)
        if bool(self.teachers) != bool(self.teacher_column):
            raise ValueError(
                "teachers (name=PATH_OR_URL ...) and teacher_column go together: set both or neither"
            )
        if not self.think_close:
            raise ValueError("think_close must be a non-empty tag, e.g. </think>")

    def teacher_specs(self, teacher_model_name_or_path: str | None) -> dict[str, str]:
        """{name: path or URL}: the routed `teachers`, or the single DistillationConfig teacher as `default`."""
        if self.teachers:
            return parse_teachers(self.teachers)
        return {"default": teacher_model_name_or_path} if teacher_model_name_or_path else {}


def is_server(spec: str) -> bool:
    """A teacher spec is an OpenAI-compatible server when it is an http(s) URL, else a model path / hub id."""
    return spec.startswith(URL_PREFIXES)
