"""TRL/open-r1 dataset options of `sft run`: --dataset_name (Parquet/JSONL dirs, a save_to_disk dir), a
`datasets:` mixture with weights (TRL's get_dataset), eval rows (--eval_split_ratio, --dataset_test_split,
--eval_traces) and the one-line refusals."""

import json
import shutil
from types import SimpleNamespace

import pytest
import yaml
from datasets import Dataset, DatasetDict
from trl import DatasetMixtureConfig

from sft.cli import main
from sft.config import DEFAULT_CONFIG
from sft.data import training_splits

pytestmark = pytest.mark.integration


def chat(tag: str, i: int) -> list[dict]:
    return [
        {"role": "user", "content": f"{tag} {i}?"},
        {"role": "assistant", "content": f"<think>{i}</think> {i}"},
    ]


def rows(tag: str, n: int) -> list[dict]:
    return [{"messages": chat(tag, i)} for i in range(n)]


def base_args(**overrides) -> SimpleNamespace:
    fields = dict(traces="unused", keep_verdicts=["correct"], include_rejected=False, max_samples=None)
    return SimpleNamespace(**{**fields, "eval_traces": None, "eval_split_ratio": None, **overrides})


def sft(toy, out, *extra) -> int:
    argv = ["run", "--config", str(DEFAULT_CONFIG), "--model", str(toy.student), "--output-dir", str(out),
            "--max-steps", "2", "--per_device_train_batch_size", "4", "--logging_steps", "1", "--lint_samples", "4",
            "--disable_tqdm", "true", *extra]  # fmt: skip
    return main(argv)


def one_error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_mixture_weights_set_row_shares(tmp_path):
    for tag in ("a", "b"):
        (tmp_path / tag).mkdir()
        Dataset.from_list(rows(tag, 30)).to_parquet(tmp_path / tag / "train.parquet")
    mixture = DatasetMixtureConfig(
        datasets=[
            {"path": str(tmp_path / "a"), "fraction": 3.0},
            {"path": str(tmp_path / "b"), "fraction": 1.0},
        ]
    )
    train, evaluation, source = training_splits(base_args(), None, mixture)
    tags = [r[0]["content"].split()[0] for r in train["messages"]]
    assert (tags.count("a"), tags.count("b")) == (30, 10) and evaluation is None and "mixture" in source
    # held-out rows: seeded, disjoint from the train rows
    train, evaluation, _ = training_splits(
        base_args(eval_split_ratio=0.25), None, mixture, evaluate=True, seed=3
    )
    again, _, _ = training_splits(base_args(eval_split_ratio=0.25), None, mixture, evaluate=True, seed=3)
    assert (len(train), len(evaluation)) == (30, 10) and train["messages"] == again["messages"]
    assert not {json.dumps(m) for m in train["messages"]} & {json.dumps(m) for m in evaluation["messages"]}


def test_save_to_disk_dataset_and_its_test_split(tmp_path):
    DatasetDict(
        {"train": Dataset.from_list(rows("t", 12)), "test": Dataset.from_list(rows("e", 3))}
    ).save_to_disk(tmp_path / "saved")
    script = SimpleNamespace(
        dataset_name=str(tmp_path / "saved"),
        dataset_config=None,
        dataset_train_split="train",
        dataset_test_split="test",
    )
    train, evaluation, _ = training_splits(base_args(max_samples=5), script, None, evaluate=True)
    assert (len(train), len(evaluation)) == (5, 3) and evaluation[0]["messages"][0]["content"] == "e 0?"


def test_dataset_name_trains_and_logs_eval_loss(toy, tmp_path, capsys):
    data = tmp_path / "jsonl"
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows("q", 16)) + "\n")
    out = tmp_path / "out"
    assert sft(toy, out, "--dataset", str(data), "--eval_split_ratio", "0.25", "--eval-strategy", "steps",
               "--eval_steps", "2") == 0  # fmt: skip
    summary = json.loads((out / "run_summary.json").read_text())
    assert (summary["train_rows"], summary["eval_rows"], summary["traces"]) == (12, 4, str(data))
    assert "'eval_loss'" in capsys.readouterr().out
    config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert config["dataset_name"] == str(data) and "traces" not in config  # the recipe's unused traces
    before = (out / "run_summary.json").stat().st_mtime_ns
    assert main(["run", "--config", str(out / "run_config.yaml")]) == 0  # the rerun finds the finished run
    assert (out / "run_summary.json").stat().st_mtime_ns == before, "a finished run is not trained again"
    other = tmp_path / "other"
    shutil.copytree(data, other)
    assert (
        sft(toy, out, "--dataset", str(other), "--eval_split_ratio", "0.25", "--eval-strategy", "steps") == 2
    )
    assert "holds a run with other settings (dataset_name" in one_error(capsys)


def test_eval_traces_are_evaluated(toy, tmp_path, capsys):
    out = tmp_path / "out"
    assert sft(toy, out, "--traces", str(toy.traces), "--eval_traces", str(toy.traces), "--eval_strategy", "steps",
               "--eval_steps", "1", "--max_samples", "8") == 0  # fmt: skip
    summary = json.loads((out / "run_summary.json").read_text())
    assert (summary["train_rows"], summary["eval_rows"]) == (8, 24)
    assert capsys.readouterr().out.count("'eval_loss'") == 2  # steps 1 and 2


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--traces", "T", "--dataset_name", "D"], "--traces and --dataset_name"),
        (["--dataset_name", "nobody/nothing"], "not in the datasets cache"),
        (["--dataset_name", "{tmp}/bad"], "columns: question, answer"),
        (["--dataset_name", "{tmp}/good", "--dataset_train_split", "dev"], "no split 'dev' (splits: train)"),
        (["--dataset_name", "{tmp}/good", "--eval_strategy", "steps"], "gives no eval rows (splits: train)"),
        (["--eval_strategy", "steps"], "has no eval data"),
        (["--eval_split_ratio", "0.1"], "--eval_split_ratio without --eval_strategy"),
        (["--eval_split_ratio", "1.5"], "must be in (0, 1)"),
    ],
)
def test_bad_dataset_options_one_line(toy, tmp_path, capsys, extra, expected):
    (tmp_path / "bad").mkdir()
    Dataset.from_list([{"question": "q", "answer": "a"}]).to_parquet(tmp_path / "bad" / "train.parquet")
    (tmp_path / "good").mkdir()
    Dataset.from_list(rows("g", 4)).to_parquet(tmp_path / "good" / "train.parquet")
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert sft(toy, tmp_path / "out", *extra) == 2
    assert expected in one_error(capsys)
    assert not (tmp_path / "out").exists()


def test_recipe_mixture_block_reaches_get_dataset(toy, tmp_path, capsys):
    for tag, n in (("a", 12), ("b", 12)):
        (tmp_path / tag).mkdir()
        Dataset.from_list(rows(tag, n)).to_parquet(tmp_path / tag / "train.parquet")
    recipe = {k: v for k, v in yaml.safe_load(DEFAULT_CONFIG.read_text()).items() if k != "traces"}
    mixture = [{"path": str(tmp_path / "a"), "fraction": 1.0}, {"path": str(tmp_path / "b"), "fraction": 1.0}]
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump({**recipe, "datasets": mixture}))
    argv = ["run", "--config", str(tmp_path / "mix.yaml"), "--model", str(toy.student), "--output-dir",
            str(tmp_path / "out"), "--max-steps", "1", "--per_device_train_batch_size", "4", "--disable_tqdm", "true"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["train_rows"] == 24 and "mixture" in summary["traces"]
    # open-r1's block has other semantics (weight subsamples each dataset): one line with TRL's spelling
    (tmp_path / "r1.yaml").write_text(yaml.safe_dump({**recipe, "dataset_mixture": {"datasets": []}}))
    assert main([*argv[:2], str(tmp_path / "r1.yaml"), *argv[3:]]) == 2
    assert "write TRL's `datasets:`" in one_error(capsys)
