"""The embedded toy task: disjoint splits, gold chains that verify, a tokenizer TRL can mask."""

from transformers import AutoTokenizer

from trace_gen.toy import task
from trace_gen.toy.build import ASSETS, arithmetic_facts
from trace_gen.toy.tokenizer import build_tokenizer
from trace_gen.verify import verify_math


def test_splits_are_disjoint_and_deterministic():
    train, test = task.make_splits(2000, 200, seed=5)
    assert len(train) == 2000 and len(test) == 200
    assert not {p.problem for p in train} & {p.problem for p in test}
    again, _ = task.make_splits(2000, 200, seed=5)
    assert [p.prompt_id for p in again] == [p.prompt_id for p in train]


def test_gold_chain_is_arithmetic_and_verifies():
    for p in task.make_splits(300, 0, seed=1)[0]:
        total = None
        for line in p.reasoning.splitlines():
            a, op, b, eq, c = line.split()
            assert eq == "=" and int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b))
            assert total is None or int(a) == total
            total = int(c)
        assert str(total) == p.answer
        assert verify_math(p.gold_completion(), p.answer).verdict == "correct"
        assert verify_math(p.gold_completion(), str(int(p.answer) + 1)).verdict == "wrong"


def test_chain_needs_several_steps():
    problems = task.make_splits(1000, 0, seed=2)[0]
    steps = [len(p.reasoning.splitlines()) for p in problems]
    assert min(steps) == task.MIN_EVENTS and max(steps) == task.MAX_EVENTS


def test_student_pretraining_text_holds_no_problem_chain():
    facts = "\n".join(arithmetic_facts(2000, seed=7))
    assert "<think>" not in facts and "boxed" not in facts and "has" not in facts


def test_tokenizer_masks_the_whole_assistant_turn(tmp_path):
    problems = task.make_splits(500, 0, seed=3)[0]
    build_tokenizer(problems).save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    p = problems[0]
    messages = [
        {"role": "user", "content": p.user_message()},
        {"role": "assistant", "content": p.gold_completion()},
    ]
    enc = tok.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    trained = tok.decode([t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m])
    assert trained == p.gold_completion() + "<|im_end|>"
    assert all(tok.decode([t]) in "0123456789" for t in tok(" 1234567890")["input_ids"][1:])


def test_committed_assets_are_small_qwen3_models():
    import json

    teacher = json.loads((ASSETS / "teacher" / "config.json").read_text())
    student = json.loads((ASSETS / "student_base" / "config.json").read_text())
    assert teacher["architectures"] == ["Qwen3ForCausalLM"] == student["architectures"]
    assert teacher["vocab_size"] == student["vocab_size"]
