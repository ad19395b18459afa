"""Exact and near-duplicate removal: normalised-text hashes, then MinHash-LSH (datasketch).

`duplicate_reasons(texts, groups, threshold)` marks every text that repeats an earlier one of the
same group (e.g. the same prompt_id; pass one group for global dedup): "exact_duplicate" or
"near_duplicate" (estimated Jaccard similarity of word 5-gram shingles >= threshold), else None.
The first occurrence is always the one kept.
"""

import hashlib
import re
from collections.abc import Hashable, Sequence

from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """Lower-cased words joined by single spaces (punctuation and spacing differences ignored)."""
    return " ".join(_WORD.findall(text.lower()))


def shingles(text: str, n: int = 5) -> set[bytes]:
    """Word n-grams of the normalised text, as bytes (all words when shorter than n)."""
    words = normalise(text).split()
    if len(words) <= n:
        return {" ".join(words).encode()}
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


def minhash(text: str, num_perm: int = 128, n: int = 5) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=1)
    m.update_batch(list(shingles(text, n)))
    return m


def duplicate_reasons(
    texts: Sequence[str],
    groups: Sequence[Hashable] | None = None,
    threshold: float = 0.9,
    num_perm: int = 128,
) -> list[str | None]:
    """Per text: "exact_duplicate", "near_duplicate" or None (kept), comparing within each group."""
    groups = groups if groups is not None else [0] * len(texts)
    assert len(groups) == len(texts), "one group per text"
    reasons: list[str | None] = [None] * len(texts)
    seen: set[tuple[Hashable, str]] = set()
    lsh: dict[Hashable, MinHashLSH] = {}
    for i, (text, group) in enumerate(zip(texts, groups, strict=True)):
        digest = hashlib.sha1(normalise(text).encode()).hexdigest()
        if (group, digest) in seen:
            reasons[i] = "exact_duplicate"
            continue
        seen.add((group, digest))
        m = minhash(text, num_perm)
        index = lsh.setdefault(group, MinHashLSH(threshold=threshold, num_perm=num_perm))
        if index.query(m):
            reasons[i] = "near_duplicate"
            continue
        index.insert(str(i), m)
    return reasons
