"""Score benchmark items: generate with a backend (resumable), or take pre-generated responses, or
the benchmark's own reference solutions (`--oracle`); verdicts come from trace_gen.verify.

Per-sample rows go to `<samples_dir>/<benchmark>-<settings hash>.jsonl`, one JSON line per
(item id, sample index): id, sample, completion (the whole assistant text: a `<think>` the chat
template prefilled comes first, so a sample cut off inside its reasoning has no answer to grade),
finish_reason, num_tokens, answer, verdict, reason, settings. Generation runs in chunks of `backend.batch_size` prompts (chunk seed = seed + index of its
first item) and appends a chunk's rows once they are scored; a rerun with the same settings reuses
every complete chunk and regenerates the others whole, so a resumed run gives the same rows as an
uninterrupted one. A per-sample file is itself a valid `--responses` file.
"""

import hashlib
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from eval_harness.benchmarks.base import Item
from eval_harness.metrics import summarise
from trace_gen.backends.base import SamplingConfig
from trace_gen.errors import UsageError
from trace_gen.verify import MathVerifierPool, Verdict, check_humaneval_many

CODE_WORKERS = 2  # sandboxed HumanEval programs run at once


def sampling_for(bench, n: int, seed: int, overrides: dict) -> SamplingConfig:
    """The benchmark's default generation settings, with the CLI's non-None overrides on top."""
    settings = {**bench.GENERATION, **{k: v for k, v in overrides.items() if v is not None}}
    return SamplingConfig(n=n, seed=seed, **settings)


def settings_id(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def score(bench, items: list[Item], completions: list[str], pool: MathVerifierPool) -> list[dict]:
    """{answer, verdict, reason} for each (item, completion) pair, in order."""
    answers = [bench.extract(c) for c in completions]
    if bench.KIND == "math":
        futures = [
            pool.submit(c, item.gold, bench.EXTRACTORS) for item, c in zip(items, completions, strict=True)
        ]
        verdicts = [f.result() for f in futures]
        return [
            {"answer": a, "verdict": v.verdict, "reason": v.reason}
            for a, v in zip(answers, verdicts, strict=True)
        ]
    runnable = [i for i, a in enumerate(answers) if a is not None]
    ran = check_humaneval_many(
        [{**items[i].gold, "completion": answers[i]} for i in runnable], workers=CODE_WORKERS
    )
    verdicts = [Verdict("failed", "no ```python block after </think>")] * len(items)
    for i, v in zip(runnable, ran, strict=True):
        verdicts[i] = v
    return [{"answer": None, "verdict": v.verdict, "reason": v.reason} for v in verdicts]


def read_sample_rows(path: Path) -> list[dict]:
    """Rows of a per-sample file; a torn last line (the run was killed mid-write) is dropped."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _by_item(items: list[Item], rows: list[dict]) -> dict[str, list[dict]]:
    """Item id -> its rows ordered by sample index (later rows for the same sample win)."""
    wanted = {it.id for it in items}
    found: dict[str, dict[int, dict]] = {}
    for r in rows:
        if r["id"] in wanted:
            found.setdefault(r["id"], {})[r["sample"]] = r
    return {i: [s[k] for k in sorted(s)] for i, s in found.items()}


def generate(
    backend,
    bench,
    items: list[Item],
    sampling: SamplingConfig,
    pool: MathVerifierPool,
    path: Path,
    settings: dict,
) -> dict[str, list[dict]]:
    """Generate and score `sampling.n` samples per item, resuming from `path`; item id -> rows."""
    key = settings_id(settings)
    done = _by_item(items, [r for r in read_sample_rows(path) if r.get("settings") == key])
    batch = backend.batch_size
    todo = [
        start
        for start in range(0, len(items), batch)
        if any(len(done.get(it.id, ())) < sampling.n for it in items[start : start + batch])
    ]
    if done:
        print(f"{bench.NAME}: resuming {path}, {len(todo)} chunk(s) of {batch} items left", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=sum(len(items[s : s + batch]) for s in todo), desc=bench.NAME, unit="item")
    with path.open("a") as f:
        if f.tell() and not path.read_bytes().endswith(b"\n"):
            f.write("\n")  # close a torn last line before appending
        for start in todo:
            chunk = items[start : start + batch]
            prompts = [backend.prompt_token_ids(list(it.messages)) for it in chunk]
            outputs = backend.generate(prompts, sampling, seed=sampling.seed + start)
            pairs = [
                (it, k, s) for it, samples in zip(chunk, outputs, strict=True) for k, s in enumerate(samples)
            ]
            scored = score(bench, [it for it, _, _ in pairs], [s.text for _, _, s in pairs], pool)
            rows = [
                {"id": it.id, "sample": k, "completion": s.text, "finish_reason": s.finish_reason}
                | {"num_tokens": s.num_tokens, **verdict, "settings": key}
                for (it, k, s), verdict in zip(pairs, scored, strict=True)
            ]
            f.writelines(json.dumps(r) + "\n" for r in rows)
            f.flush()
            done.update(_by_item(chunk, rows))
            bar.update(len(chunk))
    bar.close()
    return done


def score_given(
    bench,
    items: list[Item],
    completions: dict[str, list[dict]],
    pool: MathVerifierPool,
    path: Path,
    settings: dict,
) -> dict[str, list[dict]]:
    """Score given completions (item id -> rows with `completion`, optional finish_reason/num_tokens),
    rewriting the per-sample file; item id -> scored rows."""
    key = settings_id(settings)
    flat = [(it, k, r) for it in items for k, r in enumerate(completions[it.id])]
    scored = score(bench, [it for it, _, _ in flat], [r["completion"] for _, _, r in flat], pool)
    out: dict[str, list[dict]] = {}
    for (it, k, r), verdict in zip(flat, scored, strict=True):
        row = {"id": it.id, "sample": k, "completion": r["completion"]}
        row.update(
            finish_reason=r.get("finish_reason"), num_tokens=r.get("num_tokens"), **verdict, settings=key
        )
        out.setdefault(it.id, []).append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        f.writelines(json.dumps(r) + "\n" for it in items for r in out[it.id])
    return out


def oracle_completions(bench, items: list[Item]) -> dict[str, list[dict]]:
    """Each item's reference solution, as one model output (the harness's self-test)."""
    return {it.id: [{"completion": bench.oracle(it), "finish_reason": "stop"}] for it in items}


def read_responses(path: Path) -> list[dict]:
    """Rows of a responses file: JSONL with `id` and `completion` (one row per sample; `benchmark`,
    `finish_reason`, `num_tokens` optional). A per-sample output file of this harness qualifies."""
    if not path.is_file():
        raise UsageError(f"responses file not found: {path}")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{path}:{lineno} is not valid JSON ({err.msg})") from err
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("completion"), str):
            raise UsageError(f"{path}:{lineno} needs an 'id' and a string 'completion'")
        rows.append({**row, "id": str(row["id"])})
    return rows


def match_responses(
    path: Path, rows: list[dict], items_by_bench: dict[str, list[Item]]
) -> dict[str, dict[str, list[dict]]]:
    """Route response rows to benchmarks (by their `benchmark` field, else by id) and check that every
    item has at least one; benchmark -> item id -> rows. Rows for other items are ignored (--limit);
    a benchmark with missing ids is one UsageError line naming them."""
    routed: dict[str, dict[str, list[dict]]] = {}
    for name, items in items_by_bench.items():
        ids = {it.id for it in items}
        routed[name] = {}
        for r in rows:
            if r["id"] in ids and r.get("benchmark", name) == name:
                routed[name].setdefault(r["id"], []).append(r)
        missing = [it.id for it in items if it.id not in routed[name]]
        if missing:
            seen = list(dict.fromkeys(r["id"] for r in rows))
            raise UsageError(
                f"responses file {path} does not match benchmark {name}: {len(missing)} of {len(items)} ids "
                f"missing ({_some(missing)}); the file has ids like {_some(seen, 3)}"
            )
    return routed


def _some(ids: list[str], shown: int = 5) -> str:
    head = ", ".join(ids[:shown])
    return f"{head}, ..." if len(ids) > shown else head


def evaluate_model(
    backend,
    benches: list,
    items: dict[str, list[Item]],
    samplings: dict,
    pool,
    samples_dir: Path,
    model_id: str,
    backend_kind: str,
) -> dict[str, dict]:
    """Generate (resumably) and score every benchmark with one backend; name -> summary."""
    out = {}
    for bench in benches:
        sampling = samplings[bench.NAME]
        settings = {
            "benchmark": bench.NAME,
            "model": model_id,
            "backend": backend_kind,
            "sampling": sampling.as_dict(),
        }
        path = samples_dir / f"{bench.NAME}-{settings_id(settings)}.jsonl"
        rows = generate(backend, bench, items[bench.NAME], sampling, pool, path, settings)
        out[bench.NAME] = summary_for(bench, items[bench.NAME], rows, path, sampling.as_dict())
    return out


def summary_for(
    bench, items: list[Item], rows: dict[str, list[dict]], path: Path, sampling: dict | None
) -> dict:
    """The benchmark's metrics, with where its per-sample rows are and how they were generated."""
    summary = summarise([rows[it.id] for it in items], bench.KIND)
    return {**summary, "kind": bench.KIND, "sampling": sampling, "samples_file": str(path)}


def measure_latency(backend, bench, sampling: SamplingConfig, n_prompts: int = 8) -> float:
    """Mean seconds per response when prompts are sent one at a time (what an interactive user sees)."""
    items = bench.load(n_prompts)
    single = SamplingConfig(
        n=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_new_tokens=sampling.max_new_tokens,
        seed=sampling.seed,
    )
    t0 = time.perf_counter()
    for item in items:
        backend.generate([backend.prompt_token_ids(list(item.messages))], single, seed=sampling.seed)
    return (time.perf_counter() - t0) / len(items)
