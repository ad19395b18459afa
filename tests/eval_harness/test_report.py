"""The compare report without models: every number report.md prints (and the figure labels) is
report.json's, the figure is a 1920x1080 slide with an SVG beside it, value labels (0% included),
n/K/temperature in its caption, "n/a" where a size or a per-token latency is unknown."""

import json
import re

import numpy as np
import pytest

from eval_harness.compare import add_comparisons, markdown_table
from eval_harness.figure import plot
from eval_harness.metrics import item_scores, summarise
from trace_gen.backends.base import SamplingConfig


def _rows(correct: list[bool]) -> list[dict]:
    return [
        {"verdict": "correct" if ok else "wrong", "answer": "1", "finish_reason": "stop", "num_tokens": 9}
        for ok in correct
    ]


def synthetic_report() -> dict:
    """Three models on aime24-like (30 items x 8 samples) and toy-like (40 items x 1) sets: a teacher,
    a student that solves nothing on the toy set, and a served model with no size and one-token answers."""
    rng = np.random.default_rng(0)
    rates = {"teacher": (0.45, 0.6), "student": (0.3, 0.0), "served": (0.5, 0.7)}
    samplings = {
        "aime24": SamplingConfig(n=8, temperature=0.6, top_p=0.95, max_new_tokens=32768),
        "toy": SamplingConfig(n=1, temperature=0.0, top_p=1.0, max_new_tokens=128),
    }
    report = {
        "models": {},
        "benchmarks": ["aime24", "toy"],
        "backend": "hf",
        "sampling": {b: s.as_dict() for b, s in samplings.items()},
        "intervals": "95% ...",
    }
    per_item = {}
    for name, (aime, toy) in rates.items():
        samples = {
            "aime24": [_rows(list(rng.random(8) < p)) for p in rng.beta(aime * 2, (1 - aime) * 2, size=30)],
            "toy": [_rows([bool(rng.random() < toy)]) for _ in range(40)],
        }
        scores = {b: summarise(s, "math") for b, s in samples.items()}
        per_item[name] = {b: item_scores(s) for b, s in samples.items()}
        served = name == "served"
        report["models"][name] = {
            "path": name,
            "accuracy": sum(s["pass@1"] for s in scores.values()) / 2,
            "params": None if served else {"teacher": 7_615_616_512, "student": 1_543_714_304}[name],
            "size_mb": None if served else 1000.0,
            "tokens_per_s": 1234.5,
            "latency": {
                "ttft_s": 0.05,
                "s_per_output_token": None if served else 0.012,
                "s_per_response": 1.0,
                "tokens_per_response": 1.0 if served else 80.0,
                "prompts": 8,
            },
            "benchmarks": scores,
        }
    add_comparisons(report, per_item, samplings)
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def test_markdown_numbers_are_the_json_numbers():
    report = json.loads(json.dumps(synthetic_report()))  # as read back from report.json
    md = markdown_table(report)
    overview = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    for name, m in report["models"].items():
        cells = [c.strip() for c in overview[name].split("|")[1:-1]]
        assert cells[1] == _pct(m["accuracy"])
        assert cells[3] == _pct(report["retention_vs_teacher"][name])
        assert cells[6] == f"{1000 * m['latency']['ttft_s']:.1f}"
        assert cells[7] == ("-" if m["latency"]["s_per_output_token"] is None else "12.0")
    assert "| served |" in md and "| - | - |" in overview["served"]  # unknown size printed as "-"
    for b in report["benchmarks"]:
        for name, m in report["models"].items():
            s = m["benchmarks"][b]
            (row,) = [
                line for line in md.splitlines() if line.startswith(f"| {b} |") and f"| {name} |" in line
            ]
            lo, hi = s["pass@1_ci"]
            assert f"| {_pct(s['pass@1'])} [{_pct(lo)}, {_pct(hi)}] |" in row
            if s["samples"] > 1:
                assert f"{_pct(s['avg@8'])} ± {_pct(s['avg@8_std'])}" in row
            if name != "teacher":
                d = report["delta_vs_teacher"][name]["benchmarks"][b]
                expected = f"{100 * d['delta']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
                assert expected in row


def test_figure_is_a_slide_with_labels_caption_and_an_svg(tmp_path):
    import matplotlib.image

    report = synthetic_report()
    plot(report, tmp_path / "report.png")
    assert matplotlib.image.imread(tmp_path / "report.png").shape[:2] == (1080, 1920)
    svg = (tmp_path / "report.svg").read_text()
    text = re.sub(r"\s+", " ", " ".join(re.findall(r">([^<>]+)<", svg)))  # the SVG keeps text as text
    for m in report["models"].values():
        for s in m["benchmarks"].values():
            assert f"{_pct(s['pass@1'])}%" in text
    assert "0.0%" in text  # the student's empty toy bar still has its label
    assert "aime24: n = 30 items, K = 8 samples per item, temperature 0.6, top-p 0.95" in text
    assert "toy: n = 40 items, K = 1 sample per item, greedy (temperature 0)" in text
    assert "n/a (no safetensors)" in text and "n/a per output token" in text
    assert "7.62 B" in text and "1.54 B (20.3%)" in text  # params, and the share of the reference's
    assert "pass@1 (%)" in text and "milliseconds" in text and "parameters (billions)" in text
    d = report["delta_vs_teacher"]["student"]["benchmarks"]["toy"]
    assert f"{100 * d['delta']:+.1f} pp [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]" in text
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("models", [["teacher"], ["teacher", "student"]])
def test_figure_with_one_or_two_models(tmp_path, models):
    full = synthetic_report()
    report = {**full, "models": {m: full["models"][m] for m in models}}
    report["delta_vs_teacher"] = {m: full["delta_vs_teacher"][m] for m in models[1:]}
    plot(report, tmp_path / "r.png")
    assert (tmp_path / "r.svg").stat().st_size > 0
