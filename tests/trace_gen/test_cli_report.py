"""What a finished run prints, for real (a tiny random teacher): the summary line agrees with
stats.json, the last line names the `python -m sft run` to use, fewer kept than --n is a warning with
the count and the reasons and exit 3 (0 with --allow-short), and the toy teacher on another dataset
is warned about. Plus: inline checks and `filter` share their defaults."""

import json
import re

from trace_gen.cli import EXIT_SHORT, main
from trace_gen.config import NEAR_DUP_THRESHOLD


def data(tmp_path, n=3):
    path = tmp_path / "d.jsonl"
    path.write_text(
        "".join(json.dumps({"problem": f"Eve has {i} shells.", "answer": str(i)}) + "\n" for i in range(n))
    )
    return path


def run(argv, capsys) -> tuple[int, dict, list[str]]:
    capsys.readouterr()
    code = main(argv)
    printed = capsys.readouterr()
    stats = json.loads(printed.out.strip().splitlines()[-1]) if printed.out.strip() else {}
    return code, stats, [line for line in printed.err.splitlines() if not line.startswith("kept:")]


def test_fewer_than_n_is_a_warning_and_exit_3_unless_allow_short(tiny_teacher, tmp_path, capsys):
    argv = ["--teacher", str(tiny_teacher), "--dataset", str(data(tmp_path)), "--samples-per-prompt", "2"]
    argv += ["--max-new-tokens", "8", "--n", "5", "--backend", "hf", "--device", "cpu"]
    code, stats, err = run([*argv, "--output-dir", str(tmp_path / "a")], capsys)
    assert code == EXIT_SHORT and stats["kept"] < 5  # the random teacher answers nothing right
    (warning,) = [line for line in err if line.startswith("warning: kept")]
    assert f"kept {stats['kept']} of --n 5" in warning and "the 3 prompts ran out" in warning
    assert (
        f"{stats['verified']} of {stats['sampled']} samples verified" in warning
        and "--allow-short" in warning
    )
    assert not [line for line in err if line.startswith("next:")]
    on_disk = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert {k: on_disk[k] for k in ("kept", "verified", "sampled", "rejected")} == {
        k: stats[k] for k in ("kept", "verified", "sampled", "rejected")
    }
    summary = next(line for line in err if line.startswith(f"kept {stats['kept']} of --n 5 in "))
    assert (
        f"verified {stats['verified']} of {stats['sampled']} samples (acceptance {stats['acceptance']:.3f})"
        in summary
    )
    assert f"rejected {stats['rejected']}" in summary

    code, stats, err = run([*argv, "--output-dir", str(tmp_path / "a"), "--allow-short"], capsys)
    assert code == 0 and err[-1] == (
        "next: python -m sft run --config configs/sft/r1_distill_qwen2.5_1.5b_lora.yaml "
        f"--traces {tmp_path / 'a'} --output_dir runs/student"
    )  # the same run: resumed, nothing generated again, now accepted as short


def test_prompts_too_long_are_named_in_the_warning(tiny_teacher, tmp_path, capsys):
    argv = ["--teacher", str(tiny_teacher), "--dataset", str(data(tmp_path)), "--samples-per-prompt", "1"]
    argv += ["--n", "2", "--max-prompt-tokens", "1", "--backend", "hf", "--device", "cpu"]
    code, stats, err = run([*argv, "--output-dir", str(tmp_path / "o")], capsys)
    assert code == EXIT_SHORT and stats["kept"] == 0 and stats["skipped"] == 3
    (warning,) = [line for line in err if line.startswith("warning: kept")]
    assert "skipped: prompt_too_long 3" in warning


def test_the_toy_teacher_on_another_dataset_is_warned_about(tmp_path, capsys):
    argv = [
        "--dataset",
        str(data(tmp_path)),
        "--samples-per-prompt",
        "1",
        "--n",
        "1",
        "--max-new-tokens",
        "8",
    ]
    code, _, err = run(
        [*argv, "--backend", "hf", "--output-dir", str(tmp_path / "o"), "--allow-short"], capsys
    )
    assert code == 0
    assert any(
        re.match(r"warning: --teacher is the built-in toy teacher .* --dataset is .*d\.jsonl", e) for e in err
    )


def test_toy_run_names_the_toy_recipe(tmp_path, capsys):
    argv = ["--n", "2", "--samples-per-prompt", "1", "--batch-size", "4", "--backend", "hf"]
    code, stats, err = run([*argv, "--output-dir", str(tmp_path / "o")], capsys)
    assert code == 0 and stats["kept"] == 2
    assert err[-1].startswith("next: python -m sft run --config configs/sft/toy_student.yaml --traces ")
    assert not any(line.startswith("warning") for line in err)


def test_inline_and_filter_defaults_agree():
    from trace_gen.config import RunConfig
    from trace_gen.filters import FilterConfig

    assert FilterConfig().near_dup_threshold == NEAR_DUP_THRESHOLD == RunConfig().near_dup_threshold
    assert RunConfig().dedup == "near" and FilterConfig().drop_flagged and not RunConfig().keep_flagged
