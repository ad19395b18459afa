"""The markdown summary of one evaluation: one row per benchmark, fractions shown as percentages."""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _with_ci(s: dict, metric: str) -> str:
    lo, hi = s[f"{metric}_ci"]
    return f"{_pct(s[metric])} [{_pct(lo)}, {_pct(hi)}]"


def summary_markdown(summary: dict) -> str:
    """One row per benchmark, in percent; "unchecked" = samples the checker could not judge (timeouts,
    sandbox failures), counted as unsolved but never as wrong."""
    lines = [
        "| benchmark | n | K | pass@1 [95% CI] | pass@K | maj@K | truncated % | mean tokens | unchecked % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary["benchmarks"].items():
        k = s["samples"]
        pass_k = _with_ci(s, f"pass@{k}") if k > 1 else "-"
        maj_k = _with_ci(s, f"maj@{k}") if f"maj@{k}" in s else "-"
        tokens = "-" if s["mean_response_tokens"] is None else f"{s['mean_response_tokens']:.0f}"
        lines.append(
            f"| {name} | {s['n']} | {k} | {_with_ci(s, 'pass@1')} | {pass_k} | {maj_k} | "
            f"{_pct(s['truncation_rate'])} | {tokens} | {_pct(s['infra_error_rate'])} |"
        )
    return "\n".join(lines) + "\n"
