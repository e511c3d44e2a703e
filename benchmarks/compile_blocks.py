"""Does torch.compile pay for itself? The default model's blocks (embedding, 3 decoder
layers, final norm), forward + backward on a batch of 8 x 256, eager vs compiled.

Prints the compile time, both step times (median of alternating runs) and the number of
micro-batches after which the compiled version has made up its compile time. The output
layer is left out: it is `qwenlib.loss.linear_cross_entropy`, matrix multiplies with
nothing for a compiler to fuse.

    python benchmarks/compile_blocks.py
"""

from __future__ import annotations

import statistics
import time

import torch

from _timing import timed
from qwenlib import MinimalLLM, PretrainingConfig, get_device


def main(repeats: int = 7) -> None:
    device = get_device()
    torch.manual_seed(0)
    config = PretrainingConfig()
    model = MinimalLLM(config).to(device)
    x = torch.randint(0, config.vocab_size, (config.batch_size, config.max_seq_len), device=device)

    def blocks(ids):
        return model.hidden_states(ids)[0]

    def step_of(fn):
        def step():
            fn(x).square().mean().backward()
            model.zero_grad(set_to_none=True)
        return step

    eager, compiled = step_of(blocks), step_of(torch.compile(blocks))
    compile_s = timed(compiled, device)  # the first call compiles
    eager()
    times = {"eager": [], "compiled": []}
    for _ in range(repeats):
        times["eager"].append(timed(eager, device))
        times["compiled"].append(timed(compiled, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"device {device}; blocks forward + backward, batch {config.batch_size} x {config.max_seq_len}")
    print(f"compile (first call) {compile_s:.1f} s")
    print(f"eager    {med['eager'] * 1000:6.1f} ms/micro-batch")
    print(f"compiled {med['compiled'] * 1000:6.1f} ms/micro-batch  (ratio {med['eager'] / med['compiled']:.2f}x)")
    saved = med["eager"] - med["compiled"]
    if saved > 0:
        print(f"break-even after {compile_s / saved:,.0f} micro-batches "
              f"(the default run has {config.max_steps * config.gradient_accumulation_steps:,})")
    else:
        print("compiled is not faster here: it never pays back its compile time")


if __name__ == "__main__":
    main()
