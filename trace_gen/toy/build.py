"""Build the toy task's committed assets: tokenizer, trained teacher, pre-trained student base.

Usage:
    python -m trace_gen.toy.build            # rewrites trace_gen/toy/assets/ (~16 min, one thread)

Deterministic: fixed seeds, one thread (OMP_NUM_THREADS=1), CPU only, so on the same torch build (2.13.0+cpu) a
rerun reproduces the committed weights bit for bit (checked: all 12 files identical); it prints each
file's sha256 to compare.
The teacher is trained by the project's own `python -m sft run` (full fine-tune on gold chains of
thought); the student base only sees problem texts without solutions and standalone arithmetic facts.
"""

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from trace_gen.toy.models import init_model
from trace_gen.toy.task import MAX_TOTAL, split
from trace_gen.toy.tokenizer import build_tokenizer

ASSETS = Path(__file__).resolve().parent / "assets"
REPO = Path(__file__).resolve().parents[2]
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)


def arithmetic_facts(n: int, seed: int) -> list[str]:
    """Standalone `a + b = c` / `a - b = c` lines over the toy's number range, in random order."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, MAX_TOTAL), rng.randint(1, 9)
        lines.append(f"{a} + {b} = {a + b}" if rng.random() < 0.5 or a < b else f"{a} - {b} = {a - b}")
    return ["\n".join(lines[i : i + 6]) for i in range(0, len(lines), 6)]


def _sft(config: str, model: Path, data: Path, out: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "sft",
        "run",
        "--config",
        str(REPO / "configs" / "sft" / config),
        "--model_name_or_path",
        str(model),
        "--traces",
        str(data),
        "--output_dir",
        str(out),
    ]
    subprocess.run(
        cmd,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
    )


def _install(src: Path, dst: Path) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for name in MODEL_FILES:
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)


def build(out: Path, parts: tuple[str, ...] = ("teacher", "student_base")) -> None:
    train = split("train")
    tokenizer = build_tokenizer(train[:5000])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gold = [
            {
                "prompt_id": p.prompt_id,
                "verdict": "correct",
                "messages": [
                    {"role": "user", "content": p.user_message()},
                    {"role": "assistant", "content": p.gold_completion()},
                ],
            }
            for p in train
        ]
        (tmp / "gold").mkdir()
        pq.write_table(pa.Table.from_pylist(gold), tmp / "gold" / "part-00000.parquet")
        texts = [{"text": p.problem} for p in train] + [
            {"text": t} for t in arithmetic_facts(120_000, seed=7)
        ]
        random.Random(3).shuffle(texts)
        (tmp / "plain").mkdir()
        pq.write_table(pa.Table.from_pylist(texts), tmp / "plain" / "part-00000.parquet")

        if "teacher" in parts:
            init_model("teacher", tokenizer, str(tmp / "teacher-init"), seed=0)
            _sft("toy_teacher.yaml", tmp / "teacher-init", tmp / "gold", tmp / "teacher")
            _install(tmp / "teacher", out / "teacher")
        if "student_base" in parts:
            init_model("student", tokenizer, str(tmp / "student-init"), seed=1)
            _sft("toy_student_base.yaml", tmp / "student-init", tmp / "plain", tmp / "student-base")
            _install(tmp / "student-base", out / "student_base")
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(hashlib.sha256(f.read_bytes()).hexdigest(), f.relative_to(out))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trace_gen.toy.build", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ASSETS, help="where to write (default: %(default)s)")
    parser.add_argument("--parts", default="teacher,student_base", help="which models to (re)build")
    args = parser.parse_args(argv)
    build(args.out, tuple(args.parts.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
