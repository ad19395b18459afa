"""sft: fine-tune students on traces (TRL SFTTrainer, LoRA / QLoRA / full, token-level and feature KD)."""

import logging


class _NoKernelsHubNotice(logging.Filter):
    """bitsandbytes (CPU builds with AVX512-BF16) logs a warning at import when the optional `kernels` package
    cannot fetch its hub kernel, then falls back to its own CPU kernel: nothing is wrong, so drop that record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_NoKernelsHubNotice())
