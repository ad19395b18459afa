"""Several teachers given as `name=PATH_OR_URL` entries: one parser for `sft run` and `sft on-policy`.

`parse_teachers(["a=runs/t1", "b=runs/t2"])` -> {"a": "runs/t1", "b": "runs/t2"}. Kept free of heavy imports:
the CLI validates arguments before torch loads.
"""


def parse_teachers(entries: list[str]) -> dict[str, str]:
    """{name: path or URL} in the given order; ValueError (one line) on a malformed entry or a repeated name."""
    bad = [t for t in entries if "=" not in t or not t.split("=", 1)[0] or not t.split("=", 1)[1]]
    if bad:
        raise ValueError(f"teachers entries must be name=PATH_OR_URL, got {bad[0]!r}")
    names = [t.split("=", 1)[0] for t in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"teachers names must be unique, got {names}")
    return dict(t.split("=", 1) for t in entries)
