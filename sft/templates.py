"""Which chat template SFTTrainer trains with, and which one is saved with the student.

SFTTrainer.__init__ (TRL 1.16) changes the processing class before it tokenizes anything:
  1. `eos_token`: `tokenizer.eos_token = args.eos_token` (refused if the token is not in the vocabulary);
  2. `chat_template_path` to a .jinja file: `tokenizer.chat_template = <file text>`;
  3. with `assistant_only_loss` and a template without `{% generation %}`: renders training rows with
     `get_training_chat_template(tokenizer)` (TRL's training version of a template it knows byte for byte;
     ValueError for any other), kept on the trainer (`trainer.chat_template`), never on the tokenizer.
`apply_trainer_settings` does 1-2 on the tokenizer the lint checks and the trainer then receives (TRL repeats
them, to the same effect); `training_template` is 3 through TRL's own function. `sft.train` compares both with
the trainer it built before the first step.

Saved with the model (and so rendering every prompt at evaluation): TRL's swap in 3 never reaches the tokenizer,
so the model's own template is saved. A `--chat_template_path` training template (configs/templates/) would be,
with its markers; `saved_template` keeps the model's own one instead whenever both render the same prompts.
"""

import difflib
import re
from pathlib import Path

import trl
from trl.chat_template_utils import get_training_chat_template, has_generation_markers

from sft.config import REPO_ROOT
from sft.errors import UsageError

SHIPPED_DIR = REPO_ROOT / "configs" / "templates"  # our training versions of templates TRL has none for
TRL_DIR = Path(trl.__file__).parent / "chat_templates"


def apply_trainer_settings(tokenizer, eos_token: str | None, chat_template_path: str | None) -> None:
    """Apply `--eos_token` and `--chat_template_path` to `tokenizer` as SFTTrainer.__init__ does."""
    if eos_token is not None:
        if eos_token not in tokenizer.get_vocab():
            raise UsageError(
                f"--eos_token {eos_token!r} is not a token of this tokenizer (e.g. '<|im_end|>' for Qwen chat "
                f"models); its eos is {tokenizer.eos_token!r}"
            )
        tokenizer.eos_token = eos_token
    if chat_template_path is not None:
        path = Path(chat_template_path)
        if not path.exists():
            shipped = ", ".join(sorted(p.name for p in SHIPPED_DIR.glob("*.jinja")))
            raise UsageError(
                f"--chat_template_path {chat_template_path} not found: pass a .jinja file, e.g. one of "
                f"{SHIPPED_DIR}/ ({shipped})"
            )
        if not (path.is_file() and path.suffix in (".jinja", ".j2")):
            shipped = ", ".join(sorted(p.name for p in SHIPPED_DIR.glob("*.jinja")))
            raise UsageError(
                f"--chat_template_path {chat_template_path} is not a .jinja file (cloning another tokenizer's "
                f"template is not supported here); training templates: {SHIPPED_DIR}/ ({shipped})"
            )
        tokenizer.chat_template = path.read_text(encoding="utf-8")


def training_template(tokenizer, assistant_only_loss: bool) -> str | None:
    """The template SFTTrainer renders training rows with. None: no template, or no `{% generation %}` markers
    and no TRL training version (SFTTrainer would raise)."""
    template = tokenizer.chat_template
    if template is None or not assistant_only_loss or has_generation_markers(template):
        return template
    try:
        return get_training_chat_template(tokenizer)
    except ValueError:
        return None


def trainer_chat_template(tokenizer, assistant_only_loss: bool) -> str | None:
    """What SFTTrainer stores as `trainer.chat_template` (None: it renders with the tokenizer's own)."""
    if assistant_only_loss and not has_generation_markers(tokenizer.chat_template):
        return training_template(tokenizer, assistant_only_loss)
    return None


def eval_prompt_ids(tokenizer, messages: list[dict], template: str) -> list[int]:
    """What trace_gen and eval_harness feed the model: the conversation before the last assistant turn with the
    generation prompt."""
    return list(
        tokenizer.apply_chat_template(
            messages, chat_template=template, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
    )


# prompts two templates must render alike to count as "the same prompts", beside each row's own; with
# REFERENCE_ANSWER they are also the lint's reference conversations
REFERENCE_ANSWER = "<think>\nTwo plus three is five.\n</think>\n\nThe answer is 5."
SYNTHETIC_PROMPTS = [
    [{"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2 + 3?"}],
]


def probe_prompts(rows: list[list[dict]]) -> list[list[dict]]:
    """Single-turn prompts to compare templates on: each row's system turn (if any) + its last user turn, and
    SYNTHETIC_PROMPTS (with and without a system turn). Earlier turns are left out on purpose: training
    templates keep the reasoning that stock templates drop from history, which the lint reports separately."""
    out = [*SYNTHETIC_PROMPTS]
    for messages in rows:
        users = [m for m in messages[:-1] if m["role"] == "user"]
        if users:
            out.append([m for m in messages[:1] if m["role"] == "system"] + users[-1:])
    return out


def same_prompts(tokenizer, a: str, b: str, prompts: list[list[dict]]) -> bool:
    return all(eval_prompt_ids(tokenizer, m, a) == eval_prompt_ids(tokenizer, m, b) for m in prompts)


def saved_template(tokenizer, stock: str | None, prompts: list[list[dict]]) -> str | None:
    """The template to save with the student: the model's own (`stock`) when the tokenizer's current one (from
    `--chat_template_path`) renders the same generation prompt for each of `prompts` (probe_prompts), else the
    current one."""
    current = tokenizer.chat_template
    if stock is None or current is None or stock == current:
        return current
    return stock if same_prompts(tokenizer, stock, current, prompts) else current


def shipped_templates(like: str | None = None) -> list[Path]:
    """configs/templates/*.jinja, the most similar to `like` first."""
    paths = sorted(SHIPPED_DIR.glob("*.jinja"))
    if like is None:
        return paths
    return sorted(paths, key=lambda p: -similarity(like, p.read_text(encoding="utf-8")))


def describe(template: str | None, tokenizer_template: str | None) -> str:
    """A short name for a template: TRL's file it equals, one of ours, or the tokenizer's own."""
    if template is None:
        return "none"
    for path in [*shipped_templates(), *sorted(TRL_DIR.glob("*.jinja"))]:
        if path.read_text(encoding="utf-8") == template:
            where = "TRL's" if path.parent == TRL_DIR else "distill-kit's"
            return f"{where} {path.name}"
    return "the tokenizer's own" if template == tokenizer_template else "a custom template"


def similarity(a: str, b: str) -> float:
    """difflib ratio over words and symbols (over characters it takes seconds per template)."""
    words = re.compile(r"\w+|[^\w\s]")
    return difflib.SequenceMatcher(None, words.findall(a), words.findall(b)).ratio()


def closest_trl_template(template: str) -> tuple[str, float]:
    """(file name, similarity 0..1) of the stock template TRL ships that is most like `template`."""
    scores = {
        p.name: similarity(template, p.read_text(encoding="utf-8"))
        for p in sorted(TRL_DIR.glob("*.jinja"))
        if not p.stem.endswith("_training")
    }
    name = max(scores, key=scores.get)
    return name, scores[name]


def trl_training_version(name: str) -> str | None:
    """TRL's training file for one of its stock templates, if it ships one."""
    path = TRL_DIR / name.replace(".jinja", "_training.jinja")
    return path.name if path.is_file() else None
