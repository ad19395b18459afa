"""Root fixtures: real-shape tokenizers and tiny random models (see tests/real_models.py for what is real).

`real_tok(family)` -> the family's tokenizer loaded with AutoTokenizer (e.g. "r1-distill", "qwen2.5").
`real_model(arch, family, vocab_size=None, seed=0)` -> Path of a hub-like checkpoint directory, e.g.
`real_model("qwen2", "r1-distill", 152_064)` for an R1-Distill-Qwen-7B-shaped teacher.
Both are session-scoped factories; files are built once per process, `real_tok` returns a fresh
(mutable) tokenizer each call.

Hypothesis runs under the "ci" profile unless HYPOTHESIS_PROFILE names another: no deadline and no
too-slow health check (a loaded machine must not fail a property on time), derandomized (the same
examples on every run, so a failure reproduces), no example database written into the checkout. These
are the values of Hypothesis' own "ci" profile, which it loads only when a CI variable is set; here
it is the default everywhere, so a loaded developer machine runs what CI runs.
`HYPOTHESIS_PROFILE=explore` searches fresh random examples, 1,000 per property, to hunt for new bugs.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

from tests.real_models import real_tokenizer_dir, tiny_model_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_NO_TIME_LIMITS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "print_blob": True}
settings.register_profile("ci", derandomize=True, database=None, max_examples=100, **_NO_TIME_LIMITS)
settings.register_profile("explore", max_examples=1000, **_NO_TIME_LIMITS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def real_tok():
    from transformers import AutoTokenizer

    def load(family: str):
        return AutoTokenizer.from_pretrained(real_tokenizer_dir(family))

    return load


@pytest.fixture(scope="session")
def real_model():
    return tiny_model_dir
