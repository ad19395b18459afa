"""The markdown summary of one evaluation: one row per benchmark, fractions shown as percentages
(one decimal, the numbers of summary.json)."""


def pct(value: float | None, signed: bool = False) -> str:
    """A fraction as percent with one decimal ("-" for None): how every report number is printed."""
    if value is None:
        return "-"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def with_ci(s: dict, metric: str) -> str:
    lo, hi = s[f"{metric}_ci"]
    return f"{pct(s[metric])} [{pct(lo)}, {pct(hi)}]"


def summary_markdown(summary: dict) -> str:
    """One row per benchmark, in percent; avg@K ± the standard deviation over the K runs (run j = the
    j-th sample of every item); "unchecked" = samples the checker could not judge (timeouts, sandbox
    failures), counted as unsolved but never as wrong."""
    lines = [
        "| benchmark | n | K | pass@1 % [95% CI] | avg@K ± sd | pass@K | maj@K | truncated % | mean tokens | unchecked % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary["benchmarks"].items():
        k = s["samples"]
        avg = f"{pct(s[f'avg@{k}'])} ± {pct(s[f'avg@{k}_std'])}" if k > 1 else "-"
        pass_k = with_ci(s, f"pass@{k}") if k > 1 else "-"
        maj_k = with_ci(s, f"maj@{k}") if f"maj@{k}" in s else "-"
        tokens = "-" if s["mean_response_tokens"] is None else f"{s['mean_response_tokens']:.0f}"
        lines.append(
            f"| {name} | {s['n']} | {k} | {with_ci(s, 'pass@1')} | {avg} | {pass_k} | {maj_k} | "
            f"{pct(s['truncation_rate'])} | {tokens} | {pct(s['infra_error_rate'])} |"
        )
    return "\n".join(lines) + "\n"
