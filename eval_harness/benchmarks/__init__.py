"""Benchmarks: one module per benchmark; this dict is the registry (name → module).

Each module has NAME, KIND ("math" or "code"), GENERATION (default sampling settings), SAMPLES
(the default K samples per item), and
`load(limit=None) -> list[Item]`, `extract(completion)`, `oracle(item)`; see `base.py`.
A user's own JSONL becomes a benchmark through `custom.CustomBenchmark` (CLI: --custom FILE).
"""

from eval_harness.benchmarks import aime24, amc23, gsm8k, humaneval, math500, toy

BENCHMARKS = {m.NAME: m for m in (toy, math500, gsm8k, aime24, amc23, humaneval)}
