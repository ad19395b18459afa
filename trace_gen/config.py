"""One typed configuration per trace_gen run.

`RunConfig` is what the CLI parses into (its parser is built from these fields: flag, help, --help
group and default come from each field's metadata, so a new option is one field here plus its use),
what Ray ships to its workers (`for_shard`), what `trace_gen.run.generate` takes, and the one place the
run identity (what must match for a rerun to resume into the same output directory) and the sampling
parameters are derived from. Construction checks every value that needs no file, model or network
(ranges, flag combinations) and raises a one-line `UsageError` naming the flag and the fix.

Usage:
    from trace_gen import RunConfig, generate
    stats = generate(RunConfig(teacher="Qwen/QwQ-32B", backend="vllm", dataset="data.jsonl", n=1000,
                               output_dir="runs/traces"))
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from trace_gen.backends import BACKENDS
from trace_gen.backends.base import DTYPES, SamplingConfig
from trace_gen.backends.openai_options import OpenAIOptions
from trace_gen.errors import UsageError

DEDUP_MODES = ("off", "exact", "near")
# The default of `trace_gen.filters.FilterConfig.near_dup_threshold` (a test keeps the two equal; not
# imported from there because the filters pull in datasketch, seconds before --help could print).
NEAR_DUP_THRESHOLD = 0.9
TOY_TEACHER = Path(__file__).resolve().parent / "toy" / "assets" / "teacher"  # see trace_gen.toy.build
TOY_MAX_NEW_TOKENS, MAX_NEW_TOKENS = 128, 32768
MAX_BATCH_SAMPLES = 2**20  # samples of one batch get distinct seeds below this (pipeline.batch_seed)

DATA = "teacher and problems"
OUTPUT = "output"
SAMPLING = "sampling (recorded with every row, in its `sampling` column)"
BACKEND = "generation backend"
CHECKS = "inline checks (the rules and defaults of `python -m trace_gen filter`)"
SCALE = "throughput and scale-out"
RAY = "Ray cluster (pip install '.[ray]'; see trace_gen/ray_mode.py)"


def _opt(default=None, help="", group=DATA, *, identity=False, flags=(), metavar=None, choices=None,
         shown=None, factory=None):  # fmt: skip
    """A RunConfig field. identity: part of the run identity (a rerun must match it to resume);
    flags: the flag first, then old spellings kept as hidden aliases; shown: the default as --help
    prints it (None: the value itself)."""
    meta = {"help": help, "group": group, "identity": identity, "flags": flags, "metavar": metavar,
            "choices": choices, "shown": shown}  # fmt: skip
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    # teacher and problems
    teacher: str = _opt(
        str(TOY_TEACHER), "teacher model: a local directory or a hub id (--backend openai: the served "
        "model name)", identity=True, flags=("--teacher", "--model"), metavar="MODEL",
        shown="the built-in toy teacher",
    )  # fmt: skip
    dataset: str = _opt(
        "toy", "problems: 'toy', a .jsonl/.json/.parquet file, a saved dataset directory or a hub name",
        identity=True, metavar="DATA",
    )  # fmt: skip
    split: str = _opt("train", "dataset split", identity=True)
    problem_column: str = _opt("problem", "column holding the problem text", identity=True, metavar="COL")
    answer_column: str = _opt("answer", "column holding the gold final answer", identity=True, metavar="COL")
    id_column: str | None = _opt(
        None, "column holding a stable id", identity=True, metavar="COL", shown="a hash of the problem"
    )
    tests_column: str | None = _opt(
        None, "column of code tests (stdin/stdout or HumanEval): code verdicts from the sandbox",
        identity=True, metavar="COL", shown="none (math: --answer-column)",
    )  # fmt: skip
    system_prompt: str | None = _opt(None, "system message", identity=True, metavar="TEXT", shown="none")
    instruction: str | None = _opt(
        None, "text appended to each problem ('' for none)", identity=True, metavar="TEXT",
        shown="the R1 instruction to reason step by step and box the answer",
    )  # fmt: skip
    trust_remote_code: bool = _opt(False, "allow the teacher's own modelling code")
    # output
    output_dir: Path | None = _opt(  # noqa: RUF009 (_opt returns a dataclasses.field)
        None, "directory for the traces (a Hugging Face dataset); a rerun of the same run resumes it, "
        "a different --n extends or trims it to exactly what a fresh run with that --n gives",
        OUTPUT, flags=("--output-dir", "--out"), metavar="DIR",
    )  # fmt: skip
    n: int = _opt(
        1000, "kept (verified) traces wanted; with --ray the total over the K shards (shard i gets "
        "n // K, plus one if i < n % K)", OUTPUT,
    )  # fmt: skip
    allow_short: bool = _opt(
        False, "exit 0 when the prompts run out before --n traces are kept (default: a warning and "
        "exit 3; an --n the dataset cannot reach is refused before the teacher loads)", OUTPUT,
    )  # fmt: skip
    keep_rejected: bool = _opt(False, "also write rejected samples to OUT/rejected/", OUTPUT)
    push_to_hub: str | None = _opt(
        None, "when the run ends, upload OUT (--ray: OUT/merged) as the hub dataset REPO (needs a "
        "token; a failed push is retried by rerunning the same command)", OUTPUT, metavar="REPO",
        shown="no upload",
    )  # fmt: skip
    # sampling
    samples_per_prompt: int = _opt(4, "samples drawn per prompt", SAMPLING, identity=True, metavar="K")
    temperature: float = _opt(0.6, "sampling temperature (0: greedy)", SAMPLING, identity=True)
    top_p: float = _opt(0.95, "nucleus sampling, in (0, 1]", SAMPLING, identity=True)
    max_new_tokens: int | None = _opt(
        None, "most generated tokens per sample (capped to the model's context)", SAMPLING,
        identity=True, metavar="N", shown=f"{MAX_NEW_TOKENS}; toy: {TOY_MAX_NEW_TOKENS}",
    )  # fmt: skip
    stop: tuple[str, ...] = _opt(
        None, "extra stop string (repeatable; the teacher's EOS tokens always stop)", SAMPLING,
        identity=True, metavar="TEXT", shown="none", factory=tuple,
    )  # fmt: skip
    logprobs: int | None = _opt(
        None, "store the teacher's top-K logprobs per generated token (--backend vllm)", SAMPLING,
        identity=True, metavar="K", shown="none",
    )  # fmt: skip
    seed: int = _opt(0, "base seed; each batch's seed is recorded in `sampling`", SAMPLING, identity=True)
    max_prompt_tokens: int | None = _opt(
        None, "skip (and count) longer prompts", SAMPLING, identity=True, metavar="N",
        shown="what the model's context allows",
    )  # fmt: skip
    # generation backend
    backend: str | None = _opt(
        None, "generation backend", BACKEND, identity=True, choices=BACKENDS,
        shown="vllm when it is installed and a GPU is visible, else hf; printed",
    )  # fmt: skip
    batch_size: int = _opt(
        64, "prompts per generation batch (and per committed part; part of the run identity: it "
        "fixes each batch's seed)", BACKEND, identity=True, flags=("--batch-size", "--batch-prompts"),
        metavar="N",
    )  # fmt: skip
    engine_args: dict = _opt(  # noqa: RUF009 (_opt returns a dataclasses.field)
        None, "vllm: JSON of vllm.EngineArgs fields passed through, e.g. "
        "'{\"tensor_parallel_size\": 4, \"max_model_len\": 34816}'", BACKEND, metavar="JSON",
        shown="{}", factory=dict,
    )  # fmt: skip
    device: str = _opt(
        "auto", "hf: auto (the GPU(s) when visible, several via device_map='auto'), cpu, cuda or cuda:N",
        BACKEND,
    )  # fmt: skip
    dtype: str = _opt("auto", "hf: auto = bfloat16 on GPU, float32 on CPU", BACKEND, choices=DTYPES)
    # The OpenAI-compatible server (--backend openai): its typed options and their flag group are
    # defined once (trace_gen.backends.openai_options, shared with eval_harness). Only extra_body is
    # part of the identity (it changes what the server returns).
    openai: OpenAIOptions = field(default_factory=OpenAIOptions, metadata={"group": None})
    # inline checks
    dedup: str = _opt(
        "near", "drop repeats among a prompt's verified samples: exact (normalised text) or near "
        "(exact, then MinHash Jaccard >= --near-dup-threshold)", CHECKS, identity=True, choices=DEDUP_MODES,
    )  # fmt: skip
    near_dup_threshold: float = _opt(
        NEAR_DUP_THRESHOLD, "MinHash Jaccard similarity at which a sample repeats an earlier one",
        CHECKS, identity=True,
    )  # fmt: skip
    keep_flagged: bool = _opt(
        False, "keep code samples that passed but were flagged by the sandbox (network, writes outside "
        "the work dir, signals, tampering); `filter --no-drop-flagged` does the same", CHECKS, identity=True,
    )  # fmt: skip
    decontaminate: bool = _opt(
        False, "skip prompts sharing a word 8-gram with a benchmark test set", CHECKS, identity=True
    )
    benchmarks_dir: str | None = _opt(
        None, "test sets for --decontaminate", CHECKS, identity=True, metavar="DIR",
        shown="the sets shipped in trace_gen/verify/data",
    )  # fmt: skip
    # throughput and scale-out
    num_shards: int = _opt(
        1, "split the prompts into this many disjoint shards (by a hash of the prompt id)", SCALE,
        metavar="K",
    )  # fmt: skip
    shard_index: int | None = _opt(None, "the shard this process generates", SCALE, metavar="I", shown="0")
    verify_workers: int = _opt(1, "math verifier processes beside generation", SCALE, metavar="N")
    verify_timeout: float = _opt(10.0, "seconds per math answer check", SCALE, metavar="S")
    code_workers: int = _opt(2, "sandboxed test runs at a time (code data)", SCALE, metavar="N")
    allow_unisolated: bool = _opt(
        False, "run model code without namespace isolation where namespaces are unavailable (rlimits "
        "only; at your own risk; same as DISTILL_ALLOW_UNISOLATED=1)", SCALE,
    )  # fmt: skip
    ray: bool = _opt(
        False, "run all --num-shards shards as Ray Data actors, each writing OUT/shard-XXXXX exactly as "
        "a --shard-index run would, then merge them into OUT/merged (the dataset to pass on)", RAY,
    )  # fmt: skip
    ray_address: str | None = _opt(
        None, "cluster to join ('auto', 'HOST:PORT', 'ray://...', 'local')", RAY, metavar="ADDRESS",
        shown="$RAY_ADDRESS, else the latest local cluster, else a new local one",
    )  # fmt: skip
    ray_gpus_per_worker: float | None = _opt(
        None, "GPUs Ray reserves per worker", RAY, metavar="G",
        shown="vllm: tensor_parallel_size x pipeline_parallel_size of --engine-args; hf/openai: 0",
    )  # fmt: skip
    ray_workers: int | None = _opt(
        None, "most workers (teacher copies) at once, each running shard after shard", RAY, metavar="W",
        shown="one per unfinished shard",
    )  # fmt: skip

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise the types a caller (or argparse) may pass
        set_(self, "output_dir", None if self.output_dir is None else Path(self.output_dir))
        set_(self, "stop", tuple(self.stop or ()))
        set_(self, "engine_args", dict(self.engine_args or {}))
        if isinstance(self.openai, dict):
            set_(self, "openai", OpenAIOptions(**self.openai))
        problem = _first_problem(self)
        if problem:
            raise UsageError(problem)

    @property
    def toy(self) -> bool:
        return self.dataset == "toy"

    def sampling(self) -> SamplingConfig:
        """The sampling parameters every backend gets (and every row records)."""
        default = TOY_MAX_NEW_TOKENS if self.toy else MAX_NEW_TOKENS
        return SamplingConfig(
            n=self.samples_per_prompt,
            temperature=self.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens or default,
            seed=self.seed,
            logprobs=self.logprobs,
            stop=self.stop,
        )

    def identity(self) -> dict:
        """What must match for a rerun to resume into the output directory: never secrets, never
        placement (devices, workers, server address), never --n (a rerun with another --n extends or
        trims the same run)."""
        sampling_fields = {"samples_per_prompt", "temperature", "top_p", "max_new_tokens", "stop"}
        sampling_fields |= {"logprobs", "seed"}
        identity = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("identity") and f.name not in sampling_fields
        }
        identity["sampling"] = self.sampling().as_dict()
        identity["shard"] = [self.shard_index or 0, self.num_shards]
        if self.backend == "openai" and self.openai.extra_body:
            identity["extra_body"] = self.openai.extra_body
        return identity

    def for_shard(self, index: int, n: int, output_dir: Path) -> "RunConfig":
        """The plain `--shard-index` run that is shard `index` of this --ray run."""
        return dataclasses.replace(
            self,
            ray=False,
            ray_address=None,
            ray_gpus_per_worker=None,
            ray_workers=None,
            push_to_hub=None,  # the driver pushes OUT/merged once, after the merge
            allow_short=True,  # the driver reports a short total
            shard_index=index,
            n=n,
            output_dir=output_dir,
        )


def gpus_per_worker(backend: str | None, engine_args: dict, requested: float | None) -> float:
    """GPUs Ray reserves per worker: vLLM needs one per engine rank (tensor x pipeline parallel)."""
    if backend != "vllm":
        return requested or 0.0
    ranks = engine_args.get("tensor_parallel_size", 1) * engine_args.get("pipeline_parallel_size", 1)
    if requested is None:
        return float(ranks)
    if ranks > 1 and requested != ranks:
        raise UsageError(
            f"--engine-args ask for {ranks} GPUs per engine (tensor x pipeline parallel) but "
            f"--ray-gpus-per-worker is {requested:g}; make them equal (or drop --ray-gpus-per-worker)"
        )
    return requested


def flag(name: str) -> str:
    """The flag of a RunConfig field, as messages name it."""
    f = RunConfig.__dataclass_fields__[name]
    return (f.metadata.get("flags") or ("--" + name.replace("_", "-"),))[0]


def _first_problem(c: RunConfig) -> str | None:
    """The first value that cannot work, as one line naming the flag and the fix; None when all can."""
    at_least_1 = ("n", "samples_per_prompt", "batch_size", "num_shards", "verify_workers", "code_workers")
    for name in at_least_1:
        if getattr(c, name) < 1:
            return f"{flag(name)} must be at least 1, got {getattr(c, name)}"
    for name in ("max_new_tokens", "logprobs", "max_prompt_tokens", "ray_workers"):
        value = getattr(c, name)
        if value is not None and value < 1:
            return f"{flag(name)} must be at least 1, got {value} (leave it out for the default)"
    if c.temperature < 0:
        return f"--temperature must be >= 0 (0 is greedy), got {c.temperature:g}"
    if not 0 < c.top_p <= 1:
        return f"--top-p must be in (0, 1] (1 turns nucleus sampling off), got {c.top_p:g}"
    if c.seed < 0:
        return f"--seed must be >= 0, got {c.seed}"
    if c.verify_timeout <= 0:
        return f"--verify-timeout must be positive, got {c.verify_timeout:g}"
    if not 0 < c.near_dup_threshold <= 1:
        return f"--near-dup-threshold must be in (0, 1], got {c.near_dup_threshold:g}"
    if c.batch_size * c.samples_per_prompt >= MAX_BATCH_SAMPLES:
        return (
            f"--batch-size x --samples-per-prompt must stay under {MAX_BATCH_SAMPLES} (distinct seeds "
            "per sample); lower --batch-size"
        )
    if any(not s for s in c.stop):
        return "--stop '' would stop at once; give a non-empty stop string"
    for name, choices in (("backend", BACKENDS), ("dtype", DTYPES), ("dedup", DEDUP_MODES)):
        value = getattr(c, name)
        if value is not None and value not in choices:
            return f"{flag(name)} {value!r} is not one of {', '.join(choices)}"
    if c.logprobs is not None and c.backend not in (None, "vllm"):
        return "--logprobs needs --backend vllm (top-k logprobs come from the same sampling pass)"
    if not 0 <= (c.shard_index or 0) < c.num_shards:
        return f"--shard-index {c.shard_index} is outside 0..{c.num_shards - 1} (--num-shards {c.num_shards})"
    if c.ray and c.shard_index is not None:
        return "--ray runs every shard itself; drop --shard-index (or drop --ray to run one shard)"
    if not c.ray and any(v is not None for v in (c.ray_address, c.ray_gpus_per_worker, c.ray_workers)):
        return "--ray-address, --ray-gpus-per-worker and --ray-workers need --ray"
    if (c.ray_gpus_per_worker or 0) < 0:
        return f"--ray-gpus-per-worker must not be negative, got {c.ray_gpus_per_worker:g}"
    if c.ray:
        gpus_per_worker(c.backend, c.engine_args, c.ray_gpus_per_worker)  # raises on a mismatch
    if c.ray and c.n < c.num_shards:
        return f"--n {c.n} is the total over {c.num_shards} shards; it must be at least that"
    if c.push_to_hub and c.num_shards > 1 and not c.ray:
        return (
            "--push-to-hub with --shard-index would push one shard; push the merged dataset: "
            "`python -m trace_gen merge OUT SHARD_DIR... --push-to-hub REPO`"
        )
    return None
