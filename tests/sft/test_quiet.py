"""Third-party notices that mean nothing to a user are dropped at the source, and only those."""

import logging
import subprocess
import sys

import sft  # noqa: F401  (installs the filter)


def test_bitsandbytes_kernels_hub_notice_is_dropped_and_other_records_kept(caplog):
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s.", "no kernels")
        logger.warning("a real problem")
    assert [r.getMessage() for r in caplog.records] == ["a real problem"]


def test_importing_the_stack_prints_nothing():
    code = "import sft, bitsandbytes, peft, trl"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "kernels-community" not in proc.stderr, proc.stderr
