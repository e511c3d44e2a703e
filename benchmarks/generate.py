"""Greedy generation of 256 new tokens with the default (untrained) model:
KV cache vs recomputing the whole text (two ways: qwenlib's `use_cache=False`, which
runs the output layer on the last position only, and the original package's loop,
which runs the whole model, output layer included, on every position each step),
and qwenlib vs transformers' `generate` on `to_hf(model)` (same weights, greedy, its
own cache). Runs alternate; medians of 3.

    python benchmarks/generate.py
"""

from __future__ import annotations

import statistics

import torch
from transformers.utils import logging as hf_logging

from _timing import timed
from qwenlib import MinimalLLM, PretrainingConfig, get_device, to_hf
from qwenlib.generation import generate_ids

NEW_TOKENS = 256


def main(repeats: int = 3) -> None:
    hf_logging.set_verbosity_error()
    device = get_device()
    torch.manual_seed(0)
    model = MinimalLLM(PretrainingConfig()).to(device).eval()
    hf = to_hf(model).eval()
    prompt = torch.tensor([[1]], device=device)  # 1 + 255 tokens fit the 256-token window
    results: dict[str, torch.Tensor] = {}

    def qwenlib(use_cache):
        def run():
            steps = generate_ids(model, prompt, NEW_TOKENS, temperature=0, use_cache=use_cache)
            results[f"qwenlib cache={use_cache}"] = torch.cat(list(steps))
        return run

    def original():
        # the original package's loop: full logits for every position, keep the last
        tokens = prompt
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                logits = model(tokens[:, -model.config.max_seq_len:])
                tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        results["original loop"] = tokens[0, 1:]

    def transformers():
        with torch.no_grad():
            out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                              max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                              eos_token_id=None, pad_token_id=0)
        results["transformers"] = out[0, 1:]

    runs = {"qwenlib, KV cache": qwenlib(True), "qwenlib, recompute": qwenlib(False),
            "original loop": original, "transformers generate": transformers}
    for fn in runs.values():
        fn()  # warm-up
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    rate = {k: NEW_TOKENS / statistics.median(v) for k, v in times.items()}
    print(f"device {device}; default config, greedy, 1-token prompt + {NEW_TOKENS} new tokens, "
          f"median of {repeats}")
    for name, r in rate.items():
        print(f"{name:22} {r:8.1f} tokens/s")
    same = [torch.equal(results["qwenlib cache=True"], results[k]) for k in
            ("qwenlib cache=False", "original loop", "transformers")]
    print(f"same tokens: recompute {same[0]}, original loop {same[1]}, transformers {same[2]}")
    cached = rate['qwenlib, KV cache']
    print(f"KV cache / recompute (last-position head) = {cached / rate['qwenlib, recompute']:.1f}x")
    print(f"KV cache / original loop (full logits) = {cached / rate['original loop']:.1f}x")
    print(f"qwenlib / transformers = {rate['qwenlib, KV cache'] / rate['transformers generate']:.2f}x")


if __name__ == "__main__":
    main()
