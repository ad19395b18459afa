"""`python -m trace_gen`: sample chain-of-thought traces from a teacher and keep the verified ones.

Usage:
    python -m trace_gen --out runs/traces --n 2000                       # toy teacher on the toy task
    python -m trace_gen --backend vllm --teacher Qwen/QwQ-32B --dataset data.jsonl \\
        --problem-column question --answer-column answer --n 800000 --samples-per-prompt 4 \\
        --engine-args '{"tensor_parallel_size": 4, "max_model_len": 34816}' --out runs/traces \\
        --push-to-hub me/qwq-traces          # then: datasets.load_dataset("runs/traces") or the hub copy
    python -m trace_gen --backend hf --device cuda --dtype bfloat16 --teacher MODEL ...   # no vLLM
    python -m trace_gen --backend openai --base-url http://127.0.0.1:8000/v1 --teacher NAME ...
    python -m trace_gen ... --num-shards 8 --shard-index $SLURM_ARRAY_TASK_ID --out runs/shard-$SLURM_ARRAY_TASK_ID
    python -m trace_gen merge runs/traces runs/shard-*          # join shards, print stats
    python -m trace_gen ... --ray --num-shards 64 --out runs/traces  # Ray cluster; dataset: runs/traces/merged
    python -m trace_gen filter runs/traces runs/filtered        # format/dedup/decontam/keep policy
"""

import argparse
import json
import os
import sys
from pathlib import Path

from trace_gen.backends import BACKENDS
from trace_gen.backends.base import DTYPES
from trace_gen.backends.openai_options import OpenAIOptions, add_openai_arguments
from trace_gen.errors import BackendError, UsageError
from trace_gen.prompts import R1_INSTRUCTION, dataset_prompts, toy_prompts
from trace_gen.verify.sandbox import ALLOW_UNISOLATED_ENV

TOY_TEACHER = Path(__file__).resolve().parent / "toy" / "assets" / "teacher"  # see trace_gen.toy.build
SUBCOMMANDS = ("merge", "filter")


def json_object(text: str) -> dict:
    """argparse type: a JSON object (for --engine-args, --extra-body)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": 1}}', got {text!r}")
    return value


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trace_gen",
        description=__doc__.split("\n")[0],
        epilog="subcommands: `python -m trace_gen merge --help`, `python -m trace_gen filter --help`",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--teacher", default=str(TOY_TEACHER), help="teacher model: local directory or hub id")
    p.add_argument(
        "--dataset", default="toy", help="'toy', a .jsonl/.parquet file, a saved dataset dir or a hub name"
    )
    p.add_argument("--split", default="train", help="dataset split")
    p.add_argument("--problem-column", default="problem", help="column holding the problem text")
    p.add_argument("--answer-column", default="answer", help="column holding the gold final answer")
    p.add_argument(
        "--id-column", default=None, help="column holding a stable id (default: hash of the problem)"
    )
    p.add_argument(
        "--tests-column", default=None, help="column of code tests (stdin/stdout or HumanEval): code verdicts"
    )
    p.add_argument(
        "--allow-unisolated",
        action="store_true",
        help="run model code without namespace isolation where namespaces are unavailable (rlimits only; "
        "at your own risk; same as DISTILL_ALLOW_UNISOLATED=1)",
    )
    p.add_argument("--system-prompt", default=None, help="optional system message")
    p.add_argument(
        "--instruction",
        default=None,
        help="text appended to each problem (default: the R1 instruction to reason and box the answer; "
        "'' for none)",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory (resumes if it holds this run)")
    p.add_argument(
        "--n",
        type=int,
        default=1000,
        help="number of KEPT (verified) traces to produce; with --ray the total over all K shards: "
        "shard i is given n // K, plus one if i < n %% K",
    )
    p.add_argument("--samples-per-prompt", type=int, default=4, help="samples drawn per prompt")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling")
    p.add_argument(
        "--max-new-tokens", type=int, default=None, help="max generated tokens (default: 32768; toy: 128)"
    )
    p.add_argument("--stop", action="append", default=[], help="extra stop string (repeatable)")
    p.add_argument(
        "--logprobs",
        type=int,
        default=None,
        metavar="K",
        help="store the teacher's top-K logprobs per token (vllm)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed; each batch's seed is recorded in `sampling`"
    )
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=None,
        help="skip longer prompts (default: the model's context)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="generation backend (default: vllm when it is installed and a GPU is visible, else hf; printed)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="hf: auto (the GPU(s) when visible, several via device_map='auto'), cpu, cuda or cuda:N",
    )
    p.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="hf: auto = bfloat16 on GPU, float32 on CPU"
    )
    p.add_argument("--batch-prompts", type=int, default=64, help="prompts per generation batch (and commit)")
    p.add_argument(
        "--engine-args",
        type=json_object,
        default={},
        help="vllm: JSON of vllm.EngineArgs fields passed through",
    )
    add_openai_arguments(p)
    p.add_argument(
        "--keep-rejected", action="store_true", help="also write rejected samples to OUT/rejected/"
    )
    p.add_argument(
        "--push-to-hub",
        default=None,
        metavar="REPO",
        help="when the run ends, upload OUT (with --ray: OUT/merged) as the hub dataset REPO "
        "(needs a token; a failed push is retried by rerunning the same command)",
    )
    p.add_argument(
        "--dedup",
        choices=("off", "exact", "near"),
        default="off",
        help="drop repeats among a prompt's kept samples",
    )
    p.add_argument(
        "--decontaminate", action="store_true", help="skip prompts sharing a word 8-gram with a benchmark"
    )
    p.add_argument("--benchmarks-dir", default=None, help="test sets for --decontaminate")
    p.add_argument(
        "--num-shards",
        type=int,
        default=1,
        help="split the prompts into this many disjoint shards (by a hash of the prompt id)",
    )
    p.add_argument(
        "--shard-index", type=int, default=None, help="which shard this process generates (default: 0)"
    )
    p.add_argument("--verify-workers", type=int, default=1, help="verifier processes beside generation")
    p.add_argument("--code-workers", type=int, default=2, help="sandboxed test runs at a time (code data)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the teacher's own modelling code")
    ray = p.add_argument_group("Ray cluster (pip install '.[ray]'; see trace_gen/ray_mode.py)")
    ray.add_argument(
        "--ray",
        action="store_true",
        help="run all --num-shards shards as Ray Data actors, each writing OUT/shard-XXXXX exactly as a "
        "--shard-index run would, then merge them into OUT/merged (the dataset to pass on)",
    )
    ray.add_argument(
        "--ray-address",
        default=None,
        help="cluster to join ('auto', 'HOST:PORT', 'ray://...', 'local'; default: $RAY_ADDRESS, "
        "else the latest local cluster, else a new local one)",
    )
    ray.add_argument(
        "--ray-gpus-per-worker",
        type=float,
        default=None,
        help="GPUs Ray reserves per worker (default: vllm tensor_parallel_size x pipeline_parallel_size "
        "from --engine-args; 0 for hf/openai)",
    )
    ray.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        help="most workers (teacher copies) at once; each runs shard after shard (default: one per "
        "unfinished shard; more shards than workers gives finer resume and load balance)",
    )
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.n <= 0 or args.samples_per_prompt <= 0 or args.batch_prompts <= 0 or args.num_shards <= 0:
        raise UsageError("--n, --samples-per-prompt, --batch-prompts and --num-shards must be positive")
    if args.ray and args.shard_index is not None:
        raise UsageError("--ray runs every shard itself; drop --shard-index (or drop --ray to run one shard)")
    ray_flags = (args.ray_address, args.ray_gpus_per_worker, args.ray_workers)
    if not args.ray and any(flag is not None for flag in ray_flags):
        raise UsageError("--ray-address, --ray-gpus-per-worker and --ray-workers need --ray")
    if (args.ray_workers is not None and args.ray_workers <= 0) or (args.ray_gpus_per_worker or 0) < 0:
        raise UsageError("--ray-workers must be positive and --ray-gpus-per-worker not negative")
    if args.ray and args.n < args.num_shards:
        raise UsageError(f"--n {args.n} is the total over {args.num_shards} shards; it must be at least that")
    if not 0 <= (args.shard_index or 0) < args.num_shards:
        raise UsageError(f"--shard-index {args.shard_index} is outside 0..{args.num_shards - 1}")
    if args.logprobs is not None and args.backend != "vllm":
        raise UsageError("--logprobs needs --backend vllm (top-k logprobs come from the same sampling pass)")
    if args.push_to_hub:
        if args.num_shards > 1 and not args.ray:
            raise UsageError(
                "--push-to-hub with --shard-index would push one shard; push the merged dataset: "
                "`python -m trace_gen merge OUT SHARD_DIR... --push-to-hub REPO`"
            )
        from trace_gen.dataset import check_push

        check_push(args.push_to_hub)
    if args.backend == "openai":
        OpenAIOptions.from_args(args)  # UsageError on a bad server flag, before any work
        return  # the teacher is a served model name
    teacher = Path(args.teacher)
    looks_local = args.teacher.startswith((".", "/", "~")) or teacher.exists()
    if looks_local and not (teacher / "config.json").is_file():
        raise UsageError(
            f"teacher not found: {teacher} has no config.json; pass --teacher a model directory or hub id"
        )


def load_prompts(args: argparse.Namespace):
    if args.dataset == "toy":
        return toy_prompts(args.split, args.system_prompt)
    return dataset_prompts(
        args.dataset,
        args.split,
        args.problem_column,
        args.answer_column if args.tests_column is None or args.answer_column != "answer" else None,
        args.id_column,
        args.system_prompt,
        R1_INSTRUCTION if args.instruction is None else args.instruction,
        args.tests_column,
    )


def backend_options(args: argparse.Namespace) -> dict:
    if args.backend == "hf":
        return {"device": args.device, "dtype": args.dtype}
    if args.backend == "vllm":
        return {"engine_args": args.engine_args}
    if args.backend == "openai":
        return OpenAIOptions.from_args(args).as_kwargs()
    return {}


def run_identity(args: argparse.Namespace, sampling) -> dict:
    """What must match for a rerun to resume into --out (never secrets, never engine/server placement)."""
    identity = {
        "teacher": args.teacher,
        "backend": args.backend,
        "dataset": args.dataset,
        "split": args.split,
        "columns": [args.problem_column, args.answer_column, args.id_column, args.tests_column],
        "system_prompt": args.system_prompt,
        "instruction": args.instruction,
        "sampling": sampling.as_dict(),
        "batch_prompts": args.batch_prompts,
        "max_prompt_tokens": args.max_prompt_tokens,
        "filters": {"dedup": args.dedup, "decontaminate": args.decontaminate},
        "shard": [args.shard_index or 0, args.num_shards],
    }
    if args.backend == "openai" and args.extra_body:  # changes what the server returns
        identity["extra_body"] = args.extra_body
    return identity


def sampling_config(args: argparse.Namespace):
    from trace_gen.backends.base import SamplingConfig

    return SamplingConfig(
        n=args.samples_per_prompt,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens or (128 if args.dataset == "toy" else 32768),
        seed=args.seed,
        logprobs=args.logprobs,
        stop=tuple(args.stop),
    )


def generate(args: argparse.Namespace, backend=None) -> dict:
    """One run (one shard) into --out; `backend` is built from the flags unless given (Ray workers
    build theirs once and pass it for every shard they run). With --push-to-hub, then uploads it."""
    if args.backend is None:
        from trace_gen.backends.base import auto_backend

        args.backend = auto_backend()
    check_args(args)
    if args.allow_unisolated:
        os.environ[ALLOW_UNISOLATED_ENV] = (
            "1"  # read by the code sandbox (also in Ray workers: they call this)
        )
    if args.ray:
        from trace_gen.ray_mode import run_ray

        return _pushed(run_ray(args), args.push_to_hub)
    prompts = load_prompts(args)
    sampling = sampling_config(args)
    from trace_gen.pipeline import RunSettings

    settings = RunSettings(
        n=args.n,
        batch_prompts=args.batch_prompts,
        keep_rejected=args.keep_rejected,
        num_shards=args.num_shards,
        shard_index=args.shard_index or 0,
        verify_workers=args.verify_workers,
        code_workers=args.code_workers,
        max_prompt_tokens=args.max_prompt_tokens,
        dedup=args.dedup,
        decontaminate=args.decontaminate,
        benchmarks_dir=args.benchmarks_dir,
    )
    identity = run_identity(args, sampling)
    from trace_gen.backends import make_backend
    from trace_gen.pipeline import run

    if backend is None:
        backend = make_backend(
            args.backend, args.teacher, args.batch_prompts, args.trust_remote_code, **backend_options(args)
        )
    stats = run(backend, args.teacher, prompts, sampling, settings, args.out, identity)
    return _pushed({**stats, "out": str(args.out)}, args.push_to_hub)


def _pushed(stats: dict, repo: str | None) -> dict:
    """`stats` after uploading stats["out"] to the hub as `repo` (when given), with its URL."""
    if repo is None:
        return stats
    from trace_gen.dataset import push_to_hub

    return {**stats, "pushed_to": push_to_hub(Path(stats["out"]), repo)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "merge":
            from trace_gen.merge import make_parser as merge_parser
            from trace_gen.merge import merge

            margs = merge_parser().parse_args(argv[1:])
            if margs.push_to_hub:
                from trace_gen.dataset import check_push

                check_push(margs.push_to_hub)
            stats = _pushed({**merge(margs.out, margs.shards), "out": str(margs.out)}, margs.push_to_hub)
        elif argv and argv[0] == "filter":
            from trace_gen.filter_cli import make_parser as filter_parser
            from trace_gen.filter_cli import run_filter

            stats = run_filter(filter_parser().parse_args(argv[1:]))
        else:
            stats = generate(make_parser().parse_args(argv))
    except (UsageError, BackendError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0
