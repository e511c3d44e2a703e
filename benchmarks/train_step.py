"""One training step (default config, batch 8 x 256): qwenlib vs transformers' Qwen3, side by side.

qwenlib trains with `model.loss(x, y)`, the fused chunked output layer + cross-entropy
(appendix A); transformers with its logits and `F.cross_entropy`, as a transformers user
would. The same weights (`to_hf(model)`), the same AdamW (fused, as transformers' Trainer
uses by default), the same batch. After warm-up, steps
alternate between the two so that machine noise hits both alike; the median of each is
reported as tokens/s, with their ratio. Peak memory of a step is measured in a fresh
process per model (peak resident memory during two steps, after a first one, minus before them). The share of
the fp32 matmul peak uses model FLOPs = 6 x parameters touched x tokens, where the touched
parameters are every matrix, the output head included (the embedding lookup is not a matmul).

    python benchmarks/train_step.py              # timings, memory, share of peak
    python benchmarks/train_step.py --steps 3    # quicker (default 7)

The matmul peak is a (4096 x 4096) product timed in the same alternation; the share of
peak compares medians with medians (the best of the peak runs is printed too). The share is
measured twice: with qwenlib alone in a process of its own (as in training: a second model's
1.2 GB of transient tensors in the same process changes where the C allocator puts
qwenlib's, and costs it several percent), and side by side with transformers.

It also times the output layer's three matrix multiplies alone (no softmax, no blocks,
no optimizer) in the same alternation: the ratio transformers / that time is a ceiling
on the throughput ratio of any exact fp32 implementation on the machine it runs on.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys

import torch
import torch.nn.functional as F

from _timing import timed
from qwenlib import MinimalLLM, PretrainingConfig, get_device, to_hf


def build(which: str, device):
    torch.manual_seed(0)
    config = PretrainingConfig()
    model = MinimalLLM(config).to(device)
    if which == "transformers":
        model = to_hf(model)
    model.train()
    # dropout off in both: transformers' Qwen3 has none, so compare like with like
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type in ("cpu", "cuda"))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, config.vocab_size, (config.batch_size, config.max_seq_len), generator=g)
    return config, model, opt, x.to(device), torch.roll(x, -1, 1).to(device)


def step_fn(which, model, opt, x, y):
    def step():
        if which == "transformers":
            F.cross_entropy(model(x).logits.flatten(0, 1).float(), y.flatten()).backward()
        else:
            model.loss(x, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def head_matmuls_fn(model, tokens: int, chunk: int = 256):
    """Only the three matrix multiplies any exact fp32 output layer must do, per chunk of
    tokens: logits = W h, d hidden = p^T W, d W += p h (no softmax, no loss, no blocks).
    A qwenlib step cannot be faster than this, so t_transformers / t_this is the highest
    throughput ratio an exact fp32 step can reach on this machine."""
    weight = model.embed_tokens.weight.detach()
    hidden = torch.randn(tokens, weight.shape[1], device=weight.device)
    logits = torch.empty(weight.shape[0], chunk, device=weight.device)
    grad_w = torch.zeros_like(weight)

    def run():
        for start in range(0, tokens, chunk):
            h = hidden[start:start + chunk]
            torch.mm(weight, h.t(), out=logits)
            logits.t() @ weight
            grad_w.addmm_(logits, h)
    return run


PEAK_N = 4096  # the matmul peak: one (4096 x 4096) @ (4096 x 4096) product


def peak_matmul_fn(device, n: int = PEAK_N):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return lambda: a @ b


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)[1]) / 1024


def memory_child(which: str, steps: int) -> None:
    """Peak resident memory of `steps` train steps above the resident memory before them.

    Linux only: reads VmRSS/VmHWM and resets the peak via /proc/self/clear_refs (ru_maxrss
    would not do: it survives exec, so a child inherits its parent's peak)."""
    device = get_device()
    _, model, opt, x, y = build(which, device)
    step = step_fn(which, model, opt, x, y)
    step()  # the first step allocates optimizer state; measure the steady state
    if which == "qwenlib":  # but count the logits block the fused loss keeps between calls
        import qwenlib.loss
        qwenlib.loss._block_buffer = qwenlib.loss._BlockBuffer()
    before = _status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    for _ in range(steps):
        step()
    print(json.dumps({"peak_step_mb": _status_mb("VmHWM") - before}))


def alternate(runs: dict, steps: int, device) -> dict:
    """Median seconds of each callable, timed in turn `steps` times after one warm-up each."""
    for fn in runs.values():
        fn()
    times = {k: [] for k in runs}
    for _ in range(steps):
        for which, fn in runs.items():
            times[which].append(timed(fn, device))
    return {k: statistics.median(v) for k, v in times.items()} | {
        "best peak": min(times["peak"])}


def alone_child(steps: int) -> None:
    """qwenlib's step in a process of its own, as in training, alternating with the peak."""
    device = get_device()
    _, model, opt, x, y = build("qwenlib", device)
    med = alternate({"qwenlib": step_fn("qwenlib", model, opt, x, y),
                     "peak": peak_matmul_fn(device)}, steps, device)
    print(json.dumps(med))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=7, help="timed steps per model")
    parser.add_argument("--memory-child", choices=["qwenlib", "transformers"], help=argparse.SUPPRESS)
    parser.add_argument("--alone-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, 2)
    if args.alone_child:
        return alone_child(args.steps)
    device = get_device()
    alone = json.loads(subprocess.run([sys.executable, __file__, "--alone-child", "--steps",
                                       str(args.steps)], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1])
    runs = {}
    for which in ("qwenlib", "transformers"):  # both built before either steps
        config, model, opt, x, y = build(which, device)
        runs[which] = step_fn(which, model, opt, x, y)
        if which == "qwenlib":
            head_only = head_matmuls_fn(model, config.batch_size * config.max_seq_len)
    runs["head matmuls"] = head_only
    # the peak is timed in the same alternation, so that it meets the same machine
    runs["peak"] = peak_matmul_fn(device)
    med = alternate(runs, args.steps, device)
    tokens = config.batch_size * config.max_seq_len
    params = sum(p.numel() for n, p in MinimalLLM(config).named_parameters() if p.ndim == 2)
    flops = 6 * params * tokens
    peak_flops = 2 * PEAK_N**3
    peak, best_peak = peak_flops / med["peak"] / 1e9, peak_flops / med["best peak"] / 1e9
    alone_peak = peak_flops / alone["peak"] / 1e9
    memory = {}
    if device.type == "cpu" and sys.platform.startswith("linux"):
        for which in ("qwenlib", "transformers"):
            out = subprocess.run([sys.executable, __file__, "--memory-child", which],
                                 capture_output=True, text=True, check=True)
            memory[which] = json.loads(out.stdout.strip().splitlines()[-1])["peak_step_mb"]
    print(f"device {device}; default config, batch {config.batch_size} x {config.max_seq_len} "
          f"= {tokens} tokens; median of {args.steps} alternating steps")
    print(f"model FLOPs per step: {flops / 1e9:.1f} GFLOP")
    print(f"qwenlib alone (its own process, as in training; alternating with the matmul peak, "
          f"{alone_peak:.0f} GFLOP/s there):")
    print(f"{'qwenlib':13} {alone['qwenlib']:6.2f} s/step  {tokens / alone['qwenlib']:8,.0f} tokens/s  "
          f"{flops / alone['qwenlib'] / 1e9 / alone_peak:6.1%} of matmul peak")
    print(f"side by side in one process (fp32 matmul peak here: {peak:.0f} GFLOP/s median, "
          f"best {best_peak:.0f}; floor {flops / peak / 1e9:.2f} s):")
    for which in ("qwenlib", "transformers"):
        mem = f", peak step memory {memory[which]:,.0f} MB" if which in memory else ""
        print(f"{which:13} {med[which]:6.2f} s/step  {tokens / med[which]:8,.0f} tokens/s  "
              f"{flops / med[which] / 1e9 / peak:6.1%} of matmul peak{mem}")
    print(f"throughput ratio qwenlib / transformers = {med['transformers'] / med['qwenlib']:.2f}")
    print(f"the output layer's three fp32 matmuls alone: {med['head matmuls']:.2f} s/step, so no "
          f"exact fp32 step beats transformers by more than "
          f"{med['transformers'] / med['head matmuls']:.2f}x here")
    if memory:
        print(f"peak memory ratio qwenlib / transformers = {memory['qwenlib'] / memory['transformers']:.2f}")


if __name__ == "__main__":
    main()
