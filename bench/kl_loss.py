"""Peak memory, time and exactness of the chunked fused KD loss vs the naive and liger ones.

Usage:
    flock /tmp/heavy.lock python bench/kl_loss.py                     # full size: T=2048, V=151,936, H=1536 (~17 GiB peak)
    python bench/kl_loss.py --tokens 256 --vocab 32000 --hidden 512    # small, seconds

Methods (generalized JSD(beta) of student `hidden @ W.T` vs online teacher `t_hidden @ W_t.T`, forward + backward):
  naive   - full logits + TRL's `GKDTrainer.generalized_jsd_loss` (autograd over (T, V) tensors)
  liger   - liger-kernel's `LigerFusedLinearJSDLoss` (plain torch, compiled=False, its default chunk 1024)
  chunked - `sft.chunked_kd.chunked_kd_loss` (grad-in-forward over token chunks)
Each (mode, method) runs in a fresh subprocess. Memory is the peak RSS above what exists once the inputs
(weights, hidden states) are allocated: /proc/self/clear_refs resets VmHWM, the loss + backward run,
VmHWM - VmRSS(before) is the peak. Modes: `frozen` (lm_head frozen, as under LoRA: grad wrt hidden only)
and `full_ft` (lm_head trainable: its (V, H) gradient is included in every method's peak).
Errors are max |x - naive| / max |naive| per tensor (loss, d hidden, d W), the max over tensors.
The last line printed is one JSON object.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

METHODS = ("naive", "liger", "chunked")
MODES = ("frozen", "full_ft")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--hidden", type=int, default=1536)
    p.add_argument("--teacher-hidden", type=int, default=None, help="default: same as --hidden")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--chunk-size", type=int, default=None, help="chunked method's tokens per chunk")
    p.add_argument("--masked-frac", type=float, default=0.0, help="fraction of labels set to -100")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", nargs=3, metavar=("METHOD", "MODE", "OUT_DIR"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def make_inputs(args, full_ft):
    g = torch.Generator().manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    th_dim = args.teacher_hidden or args.hidden
    hidden = torch.randn(args.tokens, args.hidden, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(args.vocab, args.hidden, generator=g) * (2.0 / args.hidden**0.5)).to(dtype)
    t_hidden = torch.randn(args.tokens, th_dim, generator=g).to(dtype)
    t_weight = (torch.randn(args.vocab, th_dim, generator=g) * (2.0 / th_dim**0.5)).to(dtype)
    labels = torch.randint(0, args.vocab, (args.tokens,), generator=g)
    labels[torch.rand(args.tokens, generator=g) < args.masked_frac] = -100
    return hidden, weight.requires_grad_(full_ft), t_hidden, t_weight, labels


def run_method(method, args, hidden, weight, t_hidden, t_weight, labels):
    """Loss (forward + backward), comparable across methods (TRL and liger have no T² factor)."""
    if method == "naive":
        from trl.experimental.gkd import GKDTrainer

        student_logits = hidden @ weight.T
        with torch.no_grad():
            teacher_logits = t_hidden @ t_weight.T
        loss = GKDTrainer.generalized_jsd_loss(
            student_logits[None],
            teacher_logits[None],
            labels[None],
            beta=args.beta,
            temperature=args.temperature,
        )
        del student_logits, teacher_logits
    elif method == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

        liger = LigerFusedLinearJSDLoss(
            weight_hard_loss=0.0,
            weight_soft_loss=1.0,
            beta=args.beta,
            temperature=args.temperature,
            compiled=False,
        )
        loss = liger(hidden, weight, t_hidden, t_weight, labels)
    else:
        from sft.chunked_kd import DEFAULT_CHUNK_SIZE, chunked_kd_loss

        loss = chunked_kd_loss(
            hidden, weight, labels, teacher_hidden=t_hidden, teacher_weight=t_weight, beta=args.beta,
            temperature=args.temperature, chunk_size=args.chunk_size or DEFAULT_CHUNK_SIZE,
        ) / args.temperature**2  # fmt: skip
    loss.backward()
    return loss.detach()


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(args):
    method, mode, out_dir = args.worker
    torch.manual_seed(args.seed)
    inputs = make_inputs(args, full_ft=mode == "full_ft")
    if method == "liger":
        import liger_kernel.chunked_loss  # noqa: F401  (import cost is not the loss's memory)
    elif method == "naive":
        import trl.experimental.gkd  # noqa: F401
    else:
        import sft.chunked_kd  # noqa: F401
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    loss = run_method(method, args, *inputs)
    seconds = time.perf_counter() - start
    peak_mib = (_status_kib("VmHWM") - before) / 1024
    hidden, weight = inputs[0], inputs[1]
    grads = {"loss": loss, "hidden": hidden.grad}
    if weight.requires_grad:
        grads["weight"] = weight.grad
    torch.save(grads, Path(out_dir) / f"{mode}_{method}.pt")
    result = {"peak_mib": round(peak_mib, 1), "seconds": round(seconds, 2), "loss": loss.item()}
    (Path(out_dir) / f"{mode}_{method}.json").write_text(json.dumps(result))


def max_rel_err(out_dir, mode, method):
    ref = torch.load(Path(out_dir) / f"{mode}_naive.pt")
    got = torch.load(Path(out_dir) / f"{mode}_{method}.pt")
    errs = [((got[k].float() - ref[k].float()).abs().max() / ref[k].float().abs().max()).item() for k in ref]
    return max(errs)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    methods, modes = args.methods.split(","), args.modes.split(",")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="kl_bench_") as out_dir:
        for mode in modes:
            for method in methods:
                cmd = [sys.executable, __file__, *(argv or sys.argv[1:]), "--worker", method, mode, out_dir]
                env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
                subprocess.run(cmd, check=True, env=env)
                rows[mode, method] = json.loads((Path(out_dir) / f"{mode}_{method}.json").read_text())
                print(f"  done {mode:8s} {method:8s} {rows[mode, method]}", file=sys.stderr, flush=True)
            if "naive" in methods:
                for method in methods:
                    rows[mode, method]["max_rel_err"] = max_rel_err(out_dir, mode, method)
    print_table(args, rows)
    print(json.dumps(summary(args, rows, methods, modes)))


def print_table(args, rows):
    print(
        f"\nKD loss fwd+bwd: T={args.tokens} V={args.vocab} H={args.hidden} {args.dtype} beta={args.beta} "
        f"temperature={args.temperature} threads={torch.get_num_threads()}"
    )
    print(f"{'mode':9s} {'method':8s} {'peak MiB':>10s} {'time s':>8s} {'loss':>12s} {'max rel err':>12s}")
    for (mode, method), r in rows.items():
        err = f"{r['max_rel_err']:.2e}" if "max_rel_err" in r else "-"
        print(f"{mode:9s} {method:8s} {r['peak_mib']:10.1f} {r['seconds']:8.2f} {r['loss']:12.6f} {err:>12s}")


def summary(args, rows, methods, modes):
    out = {"tokens": args.tokens, "vocab": args.vocab, "hidden": args.hidden, "dtype": args.dtype}
    for mode in modes:
        suffix = "" if mode == "frozen" else "_full_ft"
        chunked = rows.get((mode, "chunked"))
        if chunked is None:
            continue
        for method in ("naive", "liger"):
            if (mode, method) in rows:
                ratio = rows[mode, method]["peak_mib"] / max(chunked["peak_mib"], 1e-9)
                out[f"memory_ratio_{method}_over_chunked{suffix}"] = round(ratio, 2)
        if (mode, "naive") in rows:
            out[f"time_ratio_chunked_over_naive{suffix}"] = round(
                chunked["seconds"] / rows[mode, "naive"]["seconds"], 3
            )
        for method in methods:
            out[f"peak_mib_{method}{suffix}"] = rows[mode, method]["peak_mib"]
            out[f"seconds_{method}{suffix}"] = rows[mode, method]["seconds"]
    errs = [r["max_rel_err"] for (_, m), r in rows.items() if m == "chunked" and "max_rel_err" in r]
    if errs:
        out["max_rel_grad_err"] = max(errs)
    liger_errs = [r["max_rel_err"] for (_, m), r in rows.items() if m == "liger" and "max_rel_err" in r]
    if liger_errs:
        out["max_rel_grad_err_liger"] = max(liger_errs)
    return out


if __name__ == "__main__":
    main()
