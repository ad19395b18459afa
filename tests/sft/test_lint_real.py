"""The template lint on real tokenizers and templates: the matrix of student templates x trace formats, each with
its expected outcome, and every offered fix applied and linted again; the shipped training templates train
exactly reasoning + answer + end-of-turn and render the model's own prompts.

Tokenizers: the real Qwen vocabulary with each family's added tokens (tests/real_models.py). Templates: the
vendored real ones (tests/data/real/) and TRL's installed copies; two are derived here, each from a real one by
the one change that defines it (asserted): R1-Distill's January 2025 template (no '<think>\\n' prefill) and
Qwen3-Thinking-2507's (TRL's Qwen3 template with the generation prompt prefilling '<think>\\n'). Llama-3.1's
special tokens are added to the Qwen vocabulary (no Llama-3 vocabulary is vendored): the template, its special
tokens and eos are real, the BPE of ordinary text is Qwen's.
"""

import shlex
from contextlib import contextmanager

import pytest
from datasets import Dataset
from tokenizers import AddedToken
from transformers import AutoTokenizer

from sft.checks import check_kd_pair
from sft.config import REPO_ROOT
from sft.lint import NO_REASONING_FIX, OPEN_TAG_FIX, lint
from sft.templates import SYNTHETIC_PROMPTS, TRL_DIR, apply_trainer_settings, same_prompts, shipped_templates
from tests.real_models import real_template, real_tokenizer_dir

REASONING = "I add 2 and 2 to get 4."
ANSWER = "The answer is \\boxed{4}."
THINK = f"<think>\n{REASONING}\n</think>\n\n{ANSWER}"


def conversation(content: str, system: bool = False, multi: bool = False) -> list[dict]:
    m = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": content}]
    if multi:
        first = [{"role": "user", "content": "What is 1+1?"}, {"role": "assistant", "content": "<think>\nOne and one.\n</think>\n\n2"}]  # fmt: skip
        m = first + m
    return [{"role": "system", "content": "You are a careful solver."}, *m] if system else m


FORMATS = {
    "think": conversation(THINK),  # <think>reasoning</think>answer, as trace_gen stores it
    "no_open": conversation(
        THINK.removeprefix("<think>\n")
    ),  # sampled after a '<think>\n' prefill, tag not stored
    "system": conversation(THINK, system=True),
    "multi": conversation(THINK, multi=True),  # an earlier assistant turn before the last
    "answer_only": conversation(ANSWER),  # reasoning moved out (e.g. by a server-side reasoning parser)
}


def _derived(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, "the real template changed: re-derive"
    return text.replace(old, new)


R1_JAN2025 = _derived(real_template("r1-distill"), "{{'<｜Assistant｜><think>\\n'}}", "{{'<｜Assistant｜>'}}")
QWEN3_CURRENT = (TRL_DIR / "qwen3.jinja").read_text(encoding="utf-8")  # the later revision; TRL knows it
QWEN3_THINKING_2507 = _derived(
    QWEN3_CURRENT,
    "    {{- '<|im_start|>assistant\\n' }}\n    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n    {%- endif %}\n",
    "    {{- '<|im_start|>assistant\\n<think>\\n' }}\n",
)
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                  "<|eom_id|>", "<|python_tag|>"]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizers():
    """family -> a context manager yielding the family's tokenizer, its chat template and eos restored after use
    (the lint's settings change them; a deep copy of a 150k vocabulary takes seconds)."""
    cache = {}

    @contextmanager
    def get(family: str):
        if family not in cache:
            if family == "llama3.1":
                tok = AutoTokenizer.from_pretrained(real_tokenizer_dir("qwen2.5"))
                tok.add_tokens(
                    [AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIAL],
                    special_tokens=True,
                )
                tok.bos_token, tok.eos_token, tok.pad_token = (
                    "<|begin_of_text|>",
                    "<|eot_id|>",
                    "<|end_of_text|>",
                )
                tok.chat_template = real_template("llama3.1")
            else:
                tok = AutoTokenizer.from_pretrained(real_tokenizer_dir(family))
            cache[family] = tok
        tok = cache[family]
        before = tok.chat_template, tok.eos_token
        try:
            yield tok
        finally:
            tok.chat_template, tok.eos_token = before

    return get


@pytest.fixture(scope="module")
def template_files(tmp_path_factory):
    """Templates passed as --chat_template_path that are wrong for the student."""
    root = tmp_path_factory.mktemp("templates")
    (root / "r1.jinja").write_text(real_template("r1-distill"))
    ours = (REPO_ROOT / "configs/templates/qwen3_training.jinja").read_text()
    (root / "empty_think.jinja").write_text(ours.replace("reasoning_content.strip('\\n')", "''"))
    return root


# setup: (tokenizer family, its own template (None: the family's), its eos (None: the family's), --chat_template_path)
SETUPS = {
    "r1-distill": ("r1-distill", None, None, None),
    "r1-distill-jan2025": ("r1-distill", R1_JAN2025, None, None),
    "qwen2.5-instruct": ("qwen2.5", None, None, None),
    "qwen2.5-math-instruct": ("qwen2.5-math", None, None, None),
    "qwen2.5-base": (
        "qwen2.5",
        None,
        "<|endoftext|>",
        None,
    ),  # base model: eos <|endoftext|>, the same template
    "qwen3-launch": ("qwen3", None, None, None),
    "qwen3-current": ("qwen3", QWEN3_CURRENT, None, None),
    "qwq-32b": ("qwq", None, None, None),
    "qwen3-thinking-2507": ("qwen3", QWEN3_THINKING_2507, None, None),
    "llama3.1-instruct": ("llama3.1", None, None, None),
    "wrong-path (R1 on Qwen2.5)": ("qwen2.5", None, None, "r1.jinja"),
    "empty-think path (Qwen3)": ("qwen3", None, None, "empty_think.jinja"),
}

MATH = "--chat_template_path configs/templates/qwen2_5_math_training.jinja"
QWEN3 = "--chat_template_path configs/templates/qwen3_training.jinja"
QWQ = "--chat_template_path configs/templates/qwq_training.jinja"
THINKING = "--chat_template_path configs/templates/qwen3_thinking_2507_training.jinja"
LLAMA = "--chat_template_path configs/templates/llama3_1_training.jinja"
R1_OLD = "--chat_template_path configs/templates/deepseek_r1_distill_jan2025_training.jinja"
EOS = "--eos_token '<|im_end|>'"
DROP = "drop --chat_template_path (the model's own template passes)"
OPEN, NONE = OPEN_TAG_FIX, NO_REASONING_FIX
TEMPLATE = "no_training_template"

# (setup, format) -> "pass" | (error kinds, fix). Columns: think, no_open, system, multi, answer_only.
EXPECTED = {
    "r1-distill": ["pass", ({"think_open_missing_prefill"}, OPEN), "pass", "pass", ({"no_reasoning_prefill"}, NONE)],
    "r1-distill-jan2025": [({TEMPLATE}, R1_OLD), ({TEMPLATE}, f"{R1_OLD}, then {OPEN}"), ({TEMPLATE}, R1_OLD),
                           ({TEMPLATE}, R1_OLD), ({TEMPLATE}, R1_OLD)],
    "qwen2.5-instruct": ["pass", ({"think_open_missing"}, OPEN), "pass", "pass", "pass"],
    "qwen2.5-math-instruct": [({TEMPLATE}, MATH), ({TEMPLATE}, f"{MATH}, then {OPEN}"), ({TEMPLATE}, MATH),
                              ({TEMPLATE}, MATH), ({TEMPLATE}, MATH)],
    "qwen2.5-base": [({"eos_mismatch"}, EOS), ({"eos_mismatch", "think_open_missing"}, f"{EOS}, then {OPEN}"),
                     ({"eos_mismatch"}, EOS), ({"eos_mismatch"}, EOS), ({"eos_mismatch"}, EOS)],
    "qwen3-launch": [({TEMPLATE}, QWEN3), ({TEMPLATE}, QWEN3), ({TEMPLATE}, QWEN3), ({TEMPLATE}, QWEN3),
                     ({TEMPLATE}, f"{QWEN3}, then {NONE}")],
    "qwen3-current": ["pass", "pass", "pass", "pass", ({"no_reasoning_empty_think"}, NONE)],
    "qwq-32b": [({TEMPLATE}, QWQ), ({TEMPLATE}, f"{QWQ}, then {OPEN}"), ({TEMPLATE}, QWQ), ({TEMPLATE}, QWQ),
                ({TEMPLATE}, f"{QWQ}, then {NONE}")],
    "qwen3-thinking-2507": [({TEMPLATE}, THINKING), ({TEMPLATE}, THINKING), ({TEMPLATE}, THINKING),
                            ({TEMPLATE}, THINKING), ({TEMPLATE}, f"{THINKING}, then {NONE}")],
    "llama3.1-instruct": [({TEMPLATE}, LLAMA), ({TEMPLATE}, f"{LLAMA}, then {OPEN}"), ({TEMPLATE}, LLAMA),
                          ({TEMPLATE}, LLAMA), ({TEMPLATE}, LLAMA)],
    "wrong-path (R1 on Qwen2.5)": [({"prompt_trained"}, DROP), ({"prompt_trained"}, f"{DROP}, then {OPEN}"),
                                   ({"prompt_trained"}, DROP), ({"prompt_trained"}, DROP), ({"prompt_trained"}, DROP)],
    "empty-think path (Qwen3)": [({"empty_think"}, QWEN3), ({"empty_think"}, QWEN3), ({"empty_think"}, QWEN3),
                                 ({"empty_think"}, QWEN3), ({"empty_think", "no_reasoning_empty_think"}, f"{QWEN3}, then {NONE}")],
}  # fmt: skip
# warnings expected beside the outcome (multi-turn: the saved template drops earlier reasoning at inference)
WARNINGS = {("r1-distill", "multi"): {"history_differs"}, ("qwen3-current", "multi"): {"history_differs"},
            ("qwen2.5-instruct", "answer_only"): {"no_reasoning"}, ("qwen2.5-base", "answer_only"): {"no_reasoning"},
            ("empty-think path (Qwen3)", "multi"): {"history_differs"}}  # fmt: skip
CELLS = [(setup, fmt) for setup in SETUPS for fmt in FORMATS]


def run_lint(tokenizers, template_files, setup, rows, eos=None, path=None, drop=False):
    """Lint `rows` for `setup` as `python -m sft run` does; eos/path/drop apply a fix's flags."""
    family, own_template, own_eos, setup_path = SETUPS[setup]
    with tokenizers(family) as tok:
        if own_template:
            tok.chat_template = own_template
        if own_eos:
            tok.eos_token = own_eos
        stock = tok.chat_template
        chosen = None if drop else path or (str(template_files / setup_path) if setup_path else None)
        apply_trainer_settings(tok, eos, chosen)
        dataset = Dataset.from_list([{"messages": m} for m in rows])
        return lint(
            tok, dataset, assistant_only_loss=True, max_length=4096, stock_template=stock, n_samples=8
        )


def apply_fix(fix: str, rows: list) -> tuple[dict, list]:
    """The fix's flags as keyword arguments of run_lint, and the rows after its data change."""
    flags, _, then = fix.partition(", then ")
    kw, data = {}, then or (flags if flags in (OPEN, NONE) else "")
    if flags == DROP:
        kw["drop"] = True
    elif flags not in (OPEN, NONE):
        words = shlex.split(flags)
        for name, value in zip(words[::2], words[1::2], strict=True):
            kw[{"--chat_template_path": "path", "--eos_token": "eos"}[name]] = value
    if data == OPEN:
        rows = [
            [*m[:-1], {**m[-1], "content": "<think>\n" + m[-1]["content"]}]
            if "<think>" not in m[-1]["content"]
            else m
            for m in rows
        ]
    return kw, rows


@pytest.mark.parametrize(("setup", "fmt"), CELLS, ids=[f"{s}-{f}" for s, f in CELLS])
def test_matrix(tokenizers, template_files, setup, fmt):
    rows = [FORMATS[fmt]]
    report = run_lint(tokenizers, template_files, setup, rows)
    expected = EXPECTED[setup][list(FORMATS).index(fmt)]
    warnings = {f.kind for f, _ in report.of_level("warning")}
    assert warnings == WARNINGS.get((setup, fmt), set()), report.format()
    if expected == "pass":
        assert not report.errors, report.format()
        return
    kinds, fix = expected
    assert {f.kind for f, _ in report.of_level("error")} == kinds, report.format()
    assert report.fix == fix, report.format()
    text = report.format()
    assert "rendered: …" in text or "^ first difference" in text or TEMPLATE in kinds, (
        text
    )  # where it went wrong
    if fix.endswith(NONE):
        return  # the traces must be regenerated: nothing to re-lint
    kw, fixed_rows = apply_fix(fix, rows)
    again = run_lint(tokenizers, template_files, setup, fixed_rows, **kw)
    assert not again.errors, f"the offered fix {fix!r} does not pass:\n{again.format()}"


def test_error_block_names_the_closest_trl_template(tokenizers):
    """A template nothing shipped can fix: the advice names TRL's closest template and its training version."""
    with tokenizers("qwen2.5") as tok:
        tok.chat_template = tok.chat_template.replace("'<|im_start|>assistant\\n' }}\n{%- endif %}", "'<|im_start|>assistant\\n\\n' }}\n{%- endif %}")  # fmt: skip
        assert "assistant\\n\\n" in tok.chat_template
        dataset = Dataset.from_list([{"messages": FORMATS["think"]}])
        report = lint(
            tok, dataset, assistant_only_loss=True, max_length=4096, stock_template=tok.chat_template
        )
    assert {f.kind for f, _ in report.of_level("error")} == {TEMPLATE}, report.format()
    assert report.fix.startswith("write a training version of the template")
    assert "closest template TRL ships: qwen2_5.jinja" in report.closest
    assert "trl/chat_templates/qwen2_5_training.jinja" in report.closest
    assert "^ first difference" in report.closest  # the two templates' renders, side by side
    assert report.closest.splitlines()[-3].strip().startswith("yours:")


def test_train_eval_divergence_is_shown_with_a_caret(tokenizers, template_files):
    report = run_lint(tokenizers, template_files, "r1-distill", [FORMATS["no_open"]])
    text = report.format()
    assert "train: " in text and "eval:  " in text, text
    lines = text.splitlines()
    train = next(line for line in lines if line.strip().startswith("train: "))
    caret = next(line for line in lines if "^ first difference" in line)
    column = caret.index("^")
    assert train[column:].startswith("I add"), (train, caret)  # the trace starts where '<think>\n' should be


# --- the shipped training templates -------------------------------------------------------------------------

# template file -> (family, the model's own template(s) it must render prompts like, eos, masked text of THINK)
SHIPPED = {
    "qwen2_5_math_training.jinja": ("qwen2.5-math", [real_template("qwen2.5-math")], f"{THINK}<|im_end|>"),
    "llama3_1_training.jinja": ("llama3.1", [real_template("llama3.1")], f"{THINK}<|eot_id|>"),
    "qwen3_training.jinja": ("qwen3", [real_template("qwen3"), QWEN3_CURRENT], f"{THINK}<|im_end|>"),
    "qwq_training.jinja": ("qwq", [real_template("qwq")], f"{THINK}<|im_end|>"),
    "qwen3_thinking_2507_training.jinja": ("qwen3", [QWEN3_THINKING_2507], f"{THINK}<|im_end|>"),
    "deepseek_r1_distill_jan2025_training.jinja": (
        "r1-distill",
        [R1_JAN2025],
        f"{THINK}<｜end▁of▁sentence｜>",
    ),
}


def test_every_shipped_template_is_covered():
    assert sorted(SHIPPED) == [p.name for p in shipped_templates()]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_template_trains_exactly_reasoning_answer_and_end_of_turn(tokenizers, name):
    family, stocks, masked = SHIPPED[name]
    with tokenizers(family) as tok:
        _check_shipped(tok, name, stocks, masked)


def _check_shipped(tok, name, stocks, masked):
    template = (REPO_ROOT / "configs/templates" / name).read_text()
    for messages in (FORMATS["think"], FORMATS["system"], FORMATS["multi"]):
        enc = tok.apply_chat_template(
            messages,
            chat_template=template,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        runs, current = [], []  # maximal runs of trained tokens, one per assistant turn
        for token, bit in zip(enc["input_ids"], enc["assistant_masks"], strict=True):
            if bit:
                current.append(token)
            elif current:
                runs, current = [*runs, current], []
        runs += [current] if current else []
        assert len(runs) == sum(m["role"] == "assistant" for m in messages), name
        assert tok.decode(runs[-1]) == masked, (name, tok.decode(runs[-1]))
    for stock in stocks:  # the same prompts, so evaluation of the saved student is unchanged
        prompts = [*SYNTHETIC_PROMPTS, FORMATS["system"][:2], FORMATS["think"][:1]]
        assert same_prompts(tok, template, stock, prompts), name


# --- token-level KD: one tokenizer, one embedding size ------------------------------------------------------


def test_kd_pair_mismatch_names_both_sizes_and_a_fix(real_model):
    from transformers import AutoConfig

    from sft.errors import UsageError

    def pair(student, teacher):
        return (AutoConfig.from_pretrained(student), AutoConfig.from_pretrained(teacher),
                AutoTokenizer.from_pretrained(student), AutoTokenizer.from_pretrained(teacher))  # fmt: skip

    small, large = real_model("qwen2", "qwen2.5"), real_model("qwen2", "qwen2.5", vocab_size=152_064)
    with pytest.raises(UsageError) as err:
        check_kd_pair(*pair(small, large))
    assert "student 151,936 rows, teacher 152,064" in str(err.value) and "--kd_source offline" in str(
        err.value
    )
    with pytest.raises(UsageError) as err:
        check_kd_pair(*pair(small, real_model("qwen2", "r1-distill", vocab_size=152_064)))
    assert "tokenizers differ" in str(err.value) and "152,064" in str(err.value)
    check_kd_pair(*pair(small, small))  # same tokenizer and size: fine
