"""custom: a user's own held-out set from a JSONL (or a JSON array, Parquet, saved or hub dataset).

    python -m eval_harness --model PATH --custom my_set.jsonl --custom-type math \\
        --problem-column question --answer-column final --id-column uid

math: the problem + the R1 instruction; scored like math500 (\\boxed{} after </think>, math-verify).
code: HumanEval-style rows (the function prompt, a `test` defining check(candidate), an entry
point); scored like humaneval. The oracle uses --solution-field when given (math: a worked solution
with \\boxed{}; code: the function body after the prompt), else "\\boxed{answer}" for math.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from eval_harness.benchmarks import humaneval
from eval_harness.benchmarks.base import R1_GENERATION, Item, gold_of, math_answer, math_messages
from trace_gen.errors import UsageError
from trace_gen.prompts import _load_rows
from trace_gen.verify.benchmarks import read_jsonl
from trace_gen.verify.sandbox import require_sandbox

KINDS = ("math", "code")


@dataclass(frozen=True)
class CustomBenchmark:
    path: str
    kind: str
    name: str
    problem_field: str = "problem"
    answer_field: str = "answer"
    id_field: str | None = None
    solution_field: str | None = None
    test_field: str = "test"
    entry_point_field: str = "entry_point"
    split: str = "test"
    extractors: tuple[str, ...] = ("boxed",)

    def __post_init__(self):
        assert self.kind in KINDS, f"custom benchmark type must be one of {KINDS}, got {self.kind!r}"

    # the module-level names every benchmark has
    @property
    def NAME(self) -> str:
        return self.name

    @property
    def KIND(self) -> str:
        return self.kind

    @property
    def GENERATION(self) -> dict:
        return R1_GENERATION

    @property
    def SAMPLES(self) -> int:
        return 1  # default K; --samples-per-prompt sets it

    @property
    def EXTRACTORS(self) -> tuple[str, ...]:
        return self.extractors

    def _rows(self) -> list[dict]:
        path = Path(self.path)
        local = path.suffix in (".jsonl", ".json", ".gz", ".parquet") or path.exists()
        if local and not path.exists():
            raise UsageError(f"custom benchmark file not found: {path.resolve()}")
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            rows = read_jsonl(path)
        elif path.suffix == ".json":
            rows = _json_rows(path)
        else:
            rows = _load_rows(self.path, self.split)
        if not rows:
            raise UsageError(f"custom benchmark {self.path} has no rows")
        if not all(isinstance(r, dict) for r in rows):
            raise UsageError(
                f"custom benchmark {self.path}: every row must be a JSON object with named fields"
            )
        if self.kind == "math":
            needed = (self.problem_field, self.answer_field)
        else:
            needed = (self.problem_field, self.test_field, self.entry_point_field)
        for field in (*needed, self.id_field, self.solution_field):
            if field is not None and field not in rows[0]:
                raise UsageError(
                    f"custom benchmark {self.path} has no column {field!r} (columns: {', '.join(rows[0])}); "
                    f"map yours with --problem-column/--answer-column/--id-column/--solution-column"
                    + ("/--tests-column/--entry-point-column" if self.kind == "code" else "")
                )
        return rows

    def prompt(self, row: dict, index: int) -> Item:
        item_id = str(row[self.id_field]) if self.id_field else f"{self.name}-{index}"
        solution = row[self.solution_field] if self.solution_field else None
        if self.kind == "math":
            gold = gold_of(row, self.answer_field, f"{self.path} row {index + 1}")
            return Item(item_id, math_messages(str(row[self.problem_field])), gold, solution)
        code_prompt = row[self.problem_field]
        gold = {
            "prompt": code_prompt,
            "test": row[self.test_field],
            "entry_point": row[self.entry_point_field],
        }
        reference = f"```python\n{code_prompt}{solution}```" if solution is not None else None
        return Item(item_id, humaneval.code_messages(code_prompt), gold, reference)

    def load(self, limit: int | None = None) -> list[Item]:
        if self.kind == "code":
            require_sandbox()  # scoring runs model code: refuse (one line) before generating, not after
        items = [self.prompt(row, i) for i, row in enumerate(self._rows()[:limit])]
        ids = [it.id for it in items]
        if len(set(ids)) != len(ids):
            raise UsageError(f"custom benchmark {self.path}: ids in {self.id_field!r} are not unique")
        return items

    def extract(self, completion: str) -> str | None:
        if self.kind == "code":
            return humaneval.extract(completion)
        return math_answer(completion, self.extractors)

    def oracle(self, item: Item) -> str:
        if item.reference is not None:
            return item.reference
        if self.kind == "math":
            return f"\\boxed{{{item.gold}}}"
        raise UsageError(f"--oracle on custom code benchmark {self.name} needs --solution-column")


def _json_rows(path: Path) -> list:
    """Rows of a .json file: a JSON array of objects (or {"data": [...]}, as some exports write, or
    one object: one row), else JSON Lines under a .json name (read by trace_gen's reader, which
    names a bad line)."""
    try:
        value = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _load_rows(str(path), "train")  # JSON Lines, or one clear error naming the line
    if isinstance(value, dict):
        (only,) = value.values() if len(value) == 1 else (None,)
        value = only if isinstance(only, list) else [value]
    if not isinstance(value, list):
        raise UsageError(
            f"custom benchmark {path} holds a single JSON value; give a JSON array of rows or JSONL"
        )
    return value
