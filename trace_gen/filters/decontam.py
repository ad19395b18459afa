"""Decontamination: drop training rows that share a word 8-gram with a benchmark (test) set.

`Decontaminator.from_benchmarks()` indexes the problem text of every test set shipped with the
package (trace_gen/verify/data; the *train* files are skipped); `add_texts`/`add_jsonl` index any
other dataset. `match(text)` names the first benchmark sharing an n-gram with `text`, or None.
An empty index is an error (a missing benchmark directory must not silently decontaminate nothing).
"""

import re
from collections.abc import Iterable
from pathlib import Path

from trace_gen.errors import UsageError
from trace_gen.verify.benchmarks import benchmarks_dir, read_jsonl

_WORD = re.compile(r"\w+")
PROBLEM_FIELDS = ("problem", "question", "prompt")


def ngrams(text: str, n: int = 8) -> set[int]:
    """Hashes of the lower-cased word n-grams of text (empty when it has fewer than n words)."""
    words = _WORD.findall(text.lower())
    return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}


class Decontaminator:
    """An index from word n-gram hashes to the benchmark they come from."""

    def __init__(self, n: int = 8):
        self.n = n
        self.index: dict[int, str] = {}
        self.sources: list[str] = []

    def add_texts(self, name: str, texts: Iterable[str]) -> "Decontaminator":
        for text in texts:
            for gram in ngrams(text, self.n):
                self.index.setdefault(gram, name)
        self.sources.append(name)
        return self

    def add_jsonl(self, path: str | Path, fields: tuple[str, ...] = PROBLEM_FIELDS) -> "Decontaminator":
        rows = read_jsonl(path)
        name = Path(path).name.split(".")[0]
        return self.add_texts(name, (str(row[f]) for row in rows for f in fields if row.get(f)))

    @classmethod
    def from_benchmarks(cls, directory: str | Path | None = None, n: int = 8) -> "Decontaminator":
        """Index every test set (*.jsonl / *.jsonl.gz without "train" in its name) of the directory."""
        directory = Path(directory) if directory else benchmarks_dir()
        decon = cls(n)
        for path in sorted([*directory.glob("*.jsonl"), *directory.glob("*.jsonl.gz")]):
            if "train" not in path.name:
                decon.add_jsonl(path)
        if not decon.index:
            raise UsageError(
                f"decontamination index is empty: no benchmark test sets (*.jsonl, *.jsonl.gz) in {directory}; "
                f"point --benchmarks-dir / DISTILL_BENCHMARKS_DIR at them, or turn decontamination off"
            )
        return decon

    def match(self, text: str) -> str | None:
        """The benchmark sharing a word n-gram with text, or None (an empty index is an error)."""
        if not self.index:
            raise UsageError("decontamination index is empty: index benchmark texts before matching")
        for gram in ngrams(text, self.n):
            if gram in self.index:
                return self.index[gram]
        return None
