"""`python -m sft init-student` (sft/init_student.py): depth-pruned students from tiny real-architecture teachers.

Teachers: Qwen3 with the real 151,936-row vocabulary and Qwen3 tokenizer/template (hidden 16), Qwen2 with a
sliding window on its upper layers (layer_types mixes sliding and full), Llama in bfloat16 with an untied head,
and the toy teacher (tests/sft/conftest.py), whose student trains through `python -m sft run`.
"""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config, Qwen3Config

from sft.cli import main
from sft.init_student import init_student, prune_layers, student_config_fields
from tests.real_models import real_tokenizer_dir

CHAT = [{"role": "user", "content": "What is 12 + 30?"}, {"role": "assistant", "content": "12 + 30 = 42."}]


def _teacher(path, config, tokenizer_dir, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, toy):
    root = tmp_path_factory.mktemp("teachers")
    small = dict(num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=256)
    qwen3 = Qwen3Config(
        vocab_size=151_936, hidden_size=16, intermediate_size=32, num_hidden_layers=4, tie_word_embeddings=True,
        eos_token_id=151645, architectures=["Qwen3ForCausalLM"], **small,
    )  # fmt: skip
    qwen2 = Qwen2Config(
        vocab_size=len(toy.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=5,
        use_sliding_window=True, sliding_window=4, max_window_layers=2, tie_word_embeddings=True,
        architectures=["Qwen2ForCausalLM"], **small,
    )  # fmt: skip
    llama = LlamaConfig(
        vocab_size=len(toy.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
        tie_word_embeddings=False, architectures=["LlamaForCausalLM"], **small,
    )  # fmt: skip
    return {
        "qwen3": _teacher(root / "qwen3", qwen3, real_tokenizer_dir("qwen3")),
        "qwen2": _teacher(root / "qwen2", qwen2, toy.student, seed=1),
        "llama": _teacher(root / "llama", llama, toy.student, dtype=torch.bfloat16, seed=2),
    }


def _greedy(model, ids, use_cache):
    out = model.generate(ids, max_new_tokens=12, do_sample=False, use_cache=use_cache, pad_token_id=0)
    return out[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize(
    "arch, keep",
    [
        ("qwen3", [0, 2, 3]),
        ("qwen2", [1, 2, 4]),
        ("llama", [3, 0]),
    ],  # llama: any order, kept in teacher order
)
def test_student_holds_the_teachers_layers_and_loads(teachers, tmp_path, arch, keep):
    teacher_dir = teachers[arch]
    out = init_student(teacher_dir, keep, tmp_path / "student")
    keep = sorted(keep)
    t_conf, s_conf = (json.loads((d / "config.json").read_text()) for d in (teacher_dir, out))
    assert s_conf["num_hidden_layers"] == len(keep)
    assert s_conf["dtype"] == t_conf["dtype"] and s_conf["architectures"] == t_conf["architectures"]
    assert s_conf["tie_word_embeddings"] == t_conf["tie_word_embeddings"]
    assert {
        k: v for k, v in s_conf.items() if k not in ("num_hidden_layers", "layer_types", "max_window_layers")
    } == {
        k: v for k, v in t_conf.items() if k not in ("num_hidden_layers", "layer_types", "max_window_layers")
    }

    t_w, s_w = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    expected = {}
    for key, value in t_w.items():
        if key.startswith("model.layers."):
            idx, rest = key.removeprefix("model.layers.").split(".", 1)
            if int(idx) in keep:
                expected[f"model.layers.{keep.index(int(idx))}.{rest}"] = value
        else:
            expected[key] = value  # embeddings, final norm, untied lm_head
    assert s_w.keys() == expected.keys()
    assert all(torch.equal(s_w[k], expected[k]) for k in expected)

    record = json.loads((out / "init_student.json").read_text())
    assert record["kept_layers"] == keep and record["teacher_num_layers"] == t_conf["num_hidden_layers"]
    assert record["student_params"] < record["teacher_params"]

    student = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    assert next(student.parameters()).dtype == getattr(torch, t_conf["dtype"])
    assert record["student_params"] == student.num_parameters()
    if t_conf["tie_word_embeddings"]:
        assert student.lm_head.weight is student.model.embed_tokens.weight
    assert not list(tmp_path.glob(".student.tmp-*"))


def test_sliding_and_full_layers_keep_their_type(teachers, tmp_path):
    """Qwen2 teacher: layers 0-1 full, 2-4 sliding (max_window_layers 2). Keeping 1, 2, 4 gives full, sliding,
    sliding, and max_window_layers 1 says the same thing."""
    teacher = json.loads((teachers["qwen2"] / "config.json").read_text())
    assert teacher["layer_types"] == ["full_attention"] * 2 + ["sliding_attention"] * 3
    out = init_student(teachers["qwen2"], [1, 2, 4], tmp_path / "student")
    config = json.loads((out / "config.json").read_text())
    assert config["layer_types"] == ["full_attention", "sliding_attention", "sliding_attention"]
    assert config["max_window_layers"] == 1 and config["sliding_window"] == 4 and config["use_sliding_window"]
    rebuilt = Qwen2Config(
        **{k: v for k, v in config.items() if k != "layer_types"}
    )  # from max_window_layers alone
    assert rebuilt.layer_types == config["layer_types"]
    student = AutoModelForCausalLM.from_pretrained(out)
    assert [layer.self_attn.sliding_window for layer in student.model.layers] == [None, 4, 4]


@pytest.mark.parametrize("arch", ["qwen3", "qwen2"])
def test_student_generates_the_same_with_and_without_cache(teachers, tmp_path, arch):
    """Greedy decoding past the sliding window (4): the KV cache is indexed by the renumbered layer_idx."""
    out = init_student(teachers[arch], [1, 3], tmp_path / "student")
    ids = AutoTokenizer.from_pretrained(out).apply_chat_template(
        CHAT[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    student = AutoModelForCausalLM.from_pretrained(out).eval()
    reference = _greedy(student, ids, use_cache=False)
    assert _greedy(student, ids, use_cache=True) == reference
    pruned = prune_layers(AutoModelForCausalLM.from_pretrained(teachers[arch]).eval(), [1, 3])  # in memory
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1]
    assert _greedy(pruned, ids, use_cache=True) == reference


def test_tokenizer_and_chat_template_round_trip(teachers, tmp_path):
    out = init_student(teachers["qwen3"], [0], tmp_path / "student")
    teacher, student = (AutoTokenizer.from_pretrained(d) for d in (teachers["qwen3"], out))
    assert (
        student.chat_template == teacher.chat_template
        and student.eos_token == teacher.eos_token == "<|im_end|>"
    )
    text = student.apply_chat_template(CHAT, tokenize=False)
    assert text == teacher.apply_chat_template(CHAT, tokenize=False) and "<|im_start|>assistant" in text
    assert student(text)["input_ids"] == teacher(text)["input_ids"]
    assert student.decode(student(text)["input_ids"]) == text
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen == json.loads((teachers["qwen3"] / "generation_config.json").read_text())


def test_cli_student_of_the_toy_teacher_trains(toy, tmp_path, capsys):
    student = tmp_path / "student"
    assert (
        main(["init-student", "--teacher", str(toy.teacher), "--keep-every", "2", "--out", str(student)]) == 0
    )
    assert "layers [0, 2] of 4" in capsys.readouterr().out
    out = tmp_path / "run"
    argv = ["run", "--config", "configs/sft/toy_student.yaml", "--model_name_or_path", str(student)]
    argv += [
        "--traces",
        str(toy.traces),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--logging_steps",
        "1",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    trained = load_file(out / "merged" / "model.safetensors")
    start = load_file(student / "model.safetensors")
    assert not torch.equal(
        trained["model.layers.1.mlp.down_proj.weight"], start["model.layers.1.mlp.down_proj.weight"]
    )


def _config_only(src, dst):
    """A teacher directory with config.json and no weights: a check that loaded weights would fail differently."""
    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    return dst


@pytest.mark.parametrize(
    "args, message",
    [
        (["--teacher", "{missing}", "--keep-every", "2"], "no such directory"),
        (["--teacher", "{empty}", "--keep-every", "2"], "has no config.json"),
        (
            ["--teacher", "{teacher}", "--keep-layers", "0,4"],
            "[4] out of range: the teacher's layers are 0..3",
        ),
        (["--teacher", "{teacher}", "--keep-layers=-1,2"], "out of range"),
        (["--teacher", "{teacher}", "--keep-layers", "1,1,2"], "more than once"),
        (["--teacher", "{teacher}", "--keep-layers", "0,1,2,3"], "keeps all 4 layers"),
        (["--teacher", "{teacher}", "--keep-layers", ""], "keeps no layer"),
        (["--teacher", "{teacher}", "--keep-layers", "0,two"], "comma-separated integers"),
        (["--teacher", "{teacher}", "--keep-every", "1"], "K >= 2"),
        (["--teacher", "{teacher}", "--keep-every", "2", "--keep-layers", "0"], "exactly one of"),
        (["--teacher", "{teacher}"], "exactly one of"),
        (
            ["--teacher", "{teacher}", "--keep-every", "2", "--output-dir", "{full}"],
            "exists and is not empty",
        ),
        (["--teacher", "{teacher}", "--keep-every", "2"], "has no tokenizer"),
        (["--teacher", "{gpt2}", "--keep-every", "2"], "no `model.layers` to prune; supported"),
        (["--keep-every", "2"], "--teacher"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(toy, tmp_path, capsys, args, message):
    from transformers import GPT2Config

    paths = {
        "missing": tmp_path / "nope",
        "empty": tmp_path / "empty",
        "teacher": _config_only(toy.teacher, tmp_path / "teacher"),
        "full": tmp_path / "full",
        "gpt2": tmp_path / "gpt2",
    }
    paths["empty"].mkdir()
    paths["full"].mkdir()
    (paths["full"] / "keep.txt").write_text("mine")
    GPT2Config(n_layer=2, n_embd=16, n_head=2).save_pretrained(paths["gpt2"])
    argv = [a.format(**paths) for a in args]
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(tmp_path / "out")]
    before = sorted(tmp_path.rglob("*"))
    assert main(["init-student", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, no temporary directory left


def test_a_crash_while_writing_leaves_no_student(toy, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", crash)
    with pytest.raises(OSError, match="disk full"):
        init_student(toy.teacher, [0, 2], tmp_path / "student")
    assert list(tmp_path.iterdir()) == []


def test_config_fields_without_layer_types():
    config = LlamaConfig(num_hidden_layers=6)
    assert student_config_fields(config, [0, 5]) == {"num_hidden_layers": 2}
