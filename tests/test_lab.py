"""`scripts/lab.py` end to end in its smoke configuration (slow: every arm for 4 steps, one seed, 10 problems;
needs the vLLM environment for the teacher's top-k logprobs, `make install-vllm`).

The second teacher of `l_multi` is the toy teacher itself behind a demo-shaped directory (building the demo's
student takes far longer than this test). Checks that every arm ran its steps and that report.md states the
numbers of report.json.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARMS = ["s_sft", "s_kd_offline", "s_kd_online", "s_fitnets", "l_random", "l_init", "l_kd", "l_cos", "l_attn",
        "l_rel", "l_multi", "l_born", "l_ema", "l_dml"]  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    if not (REPO / ".venv-vllm" / "bin" / "python").is_file():
        pytest.skip("needs the vLLM environment (make install-vllm) for trace_gen's top-k logprobs")
    tmp = tmp_path_factory.mktemp("lab")
    (tmp / "demo" / "student").mkdir(parents=True)
    (tmp / "demo" / "student" / "merged").symlink_to(REPO / "trace_gen" / "toy" / "assets" / "teacher")
    cmd = [sys.executable, "scripts/lab.py", "--steps", "4", "--seeds", "0", "--limit", "10", "--n", "40",
           "--out", str(tmp / "lab"), "--demo", str(tmp / "demo")]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=REPO)
    return tmp / "lab"


@pytest.mark.slow
def test_every_arm_runs_and_the_markdown_states_the_json(lab):
    report = json.loads((lab / "report.json").read_text())
    rows = report["summary"]["arms"]
    assert list(rows) == [*ARMS, "l_dml_peer"]
    table = {
        cells[1]: cells
        for line in (lab / "report.md").read_text().splitlines()
        if line.startswith("| ") and (cells := [c.strip() for c in line.strip("|").split("|")])[1] in rows
    }
    assert set(table) == set(rows)
    for name, a in rows.items():
        assert a["steps"] == [4] and len(a["per_seed"]) == 1 and 0 <= a["mean"] <= 1
        assert a["ci95_seeds"] == [a["mean"], a["mean"]]  # one seed: no interval
        cells = table[name]
        assert cells[3] == ", ".join(f"{x:.3f}" for x in a["per_seed"])
        mean, lo, hi = map(float, re.findall(r"\d\.\d{3}", cells[4]))
        assert (mean, lo, hi) == tuple(round(x, 3) for x in (a["mean"], *a["ci95_seeds"]))
        assert int(cells[5].replace(",", "")) == a["params"] and int(cells[6]) == a["steps"][0]
    for arm in ("l_random", "l_init"):
        assert rows[arm]["loss_curves"][0], f"{arm}: no loss curve"
    assert rows["s_sft"]["params"] < rows["l_init"]["params"] == rows["l_random"]["params"]
    assert (lab / "report.png").stat().st_size > 10_000
