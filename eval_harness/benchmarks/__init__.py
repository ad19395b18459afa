"""Benchmarks: one module per benchmark; this dict is the registry (name → module).

Each module has NAME, KIND ("math" or "code") and `load(limit=None) -> list[Item]`.
"""

from eval_harness.benchmarks import toy

BENCHMARKS = {m.NAME: m for m in (toy,)}
