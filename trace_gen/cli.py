"""`python -m trace_gen`: sample chain-of-thought traces from a teacher and keep the verified ones.

Usage:
    python -m trace_gen --out runs/traces --n 2000                       # toy teacher on the toy task
    python -m trace_gen --teacher PATH --dataset data.jsonl --problem-column question \\
        --answer-column answer --n 800000 --out runs/traces
"""

import argparse
import json
import sys
from pathlib import Path

from trace_gen.backends import BACKENDS
from trace_gen.errors import UsageError
from trace_gen.prompts import R1_INSTRUCTION, dataset_prompts, toy_prompts
from trace_gen.toy.build import ASSETS

TOY_TEACHER = ASSETS / "teacher"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trace_gen",
        description=__doc__.split("\n")[0],
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
    p.add_argument("--system-prompt", default=None, help="optional system message")
    p.add_argument(
        "--instruction",
        default=None,
        help="text appended to each problem (default: the R1 instruction to reason and box the answer)",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory (resumes if it holds this run)")
    p.add_argument("--n", type=int, default=1000, help="number of KEPT (verified) traces to produce")
    p.add_argument("--samples-per-prompt", type=int, default=4, help="samples drawn per prompt")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling")
    p.add_argument(
        "--max-new-tokens", type=int, default=None, help="max generated tokens (default: 32768; toy: 128)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed; each batch's seed is recorded in `sampling`"
    )
    p.add_argument("--backend", choices=BACKENDS, default="hf", help="generation backend")
    p.add_argument("--batch-prompts", type=int, default=64, help="prompts per generation batch")
    p.add_argument(
        "--keep-rejected", action="store_true", help="also write rejected samples to OUT/rejected/"
    )
    p.add_argument(
        "--num-shards", type=int, default=1, help="split the prompts into this many disjoint shards"
    )
    p.add_argument("--shard-index", type=int, default=0, help="which shard this process generates")
    p.add_argument("--verify-workers", type=int, default=1, help="verifier processes beside generation")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the teacher's own modelling code")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.n <= 0 or args.samples_per_prompt <= 0:
        raise UsageError("--n and --samples-per-prompt must be positive")
    if not 0 <= args.shard_index < args.num_shards:
        raise UsageError(f"--shard-index {args.shard_index} is outside 0..{args.num_shards - 1}")
    teacher = Path(args.teacher)
    looks_local = args.teacher.startswith((".", "/", "~")) or teacher.exists()
    if looks_local and not (teacher / "config.json").is_file():
        raise UsageError(
            f"teacher not found: {teacher} has no config.json; pass --teacher a model directory or hub id"
        )


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        check_args(args)
        from trace_gen.backends.base import SamplingConfig

        toy = args.dataset == "toy"
        if toy:
            prompts = toy_prompts(args.split, args.system_prompt)
        else:
            prompts = dataset_prompts(
                args.dataset,
                args.split,
                args.problem_column,
                args.answer_column,
                args.id_column,
                args.system_prompt,
                R1_INSTRUCTION if args.instruction is None else args.instruction,
            )
        max_new = args.max_new_tokens or (128 if toy else 32768)
        sampling = SamplingConfig(
            n=args.samples_per_prompt,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=max_new,
            seed=args.seed,
        )
        identity = {
            "teacher": args.teacher,
            "dataset": args.dataset,
            "split": args.split,
            "columns": [args.problem_column, args.answer_column, args.id_column],
            "system_prompt": args.system_prompt,
            "instruction": args.instruction,
            "sampling": sampling.as_dict(),
            "batch_prompts": args.batch_prompts,
            "shard": [args.shard_index, args.num_shards],
        }
        from trace_gen.backends import make_backend
        from trace_gen.pipeline import RunSettings, run

        backend = make_backend(args.backend, args.teacher, args.batch_prompts, args.trust_remote_code)
        settings = RunSettings(
            n=args.n,
            batch_prompts=args.batch_prompts,
            keep_rejected=args.keep_rejected,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
            verify_workers=args.verify_workers,
        )
        stats = run(backend, args.teacher, prompts, sampling, settings, args.out, identity)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0
