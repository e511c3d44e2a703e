"""Decoding 256 new tokens with the default (untrained) model: qwenlib against
transformers' `generate` on `to_hf(model)` (the same weights, its own cache), side by side.

- greedy from a 1-token prompt, with four decoders: qwenlib's KV cache, qwenlib
  recomputing the text (`use_cache=False`, which runs the output layer on the last position
  only), the original package's loop (the whole model, output layer included, on every
  position at every step) and transformers;
- greedy from a 200-token prompt. 200 + 256 positions do not fit the default 256-token
  window, so both sides run a copy of the model with `max_seq_len=512`: the same weights
  (a window is not a weight), and every token decoded with the cache;
- sampling (temperature 0.8, top-k 50, top-p 0.9) from the 1-token prompt. The two draw
  their random numbers differently, so here only the speed is compared.

Runs alternate; the median of `--repeats` (default 5) is reported as tokens/s, with the ratio
qwenlib / transformers, and whether the greedy tokens are the same.

    python benchmarks/generate.py
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch
from transformers.utils import logging as hf_logging

from _timing import timed
from qwenlib import MinimalLLM, PretrainingConfig, get_device, to_hf
from qwenlib.generation import generate_ids, last_logits

NEW_TOKENS = 256
SAMPLING = dict(temperature=0.8, top_k=50, top_p=0.9)


def qwenlib_decoder(model, prompt, results, name, use_cache=True, **sampling):
    sampling = sampling or dict(temperature=0)

    def run():
        steps = generate_ids(model, prompt, NEW_TOKENS, seed=0, use_cache=use_cache, **sampling)
        results[name] = torch.cat(list(steps))
    return run


def transformers_decoder(hf, prompt, results, name, **sampling):
    options = dict(do_sample=True, **sampling) if sampling else dict(do_sample=False)

    def run():
        with torch.no_grad():
            out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS,
                              min_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0, **options)
        results[name] = out[0, prompt.shape[1]:]
    return run


def original_decoder(model, prompt, results, name):
    def run():  # the original package's loop: full logits for every position, keep the last
        tokens = prompt
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                logits = model(tokens[:, -model.config.max_seq_len:])
                tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        results[name] = tokens[0, prompt.shape[1]:]
    return run


def output_layer_layouts(model, device, repeats: int = 50) -> dict[str, float]:
    """Median ms of one decode step's output layer, one hidden state times the 49,152 x 128
    weight, three ways: one product with the weight as stored (`F.linear`, what `lm_head`
    does), through a contiguous transposed (128, 49,152) copy (what `generate_ids` did
    before), and `last_logits` (the weight's rows in 8 slabs, one `torch.bmm`, no copy)."""
    weight = model.lm_head.weight.detach()
    head, x = weight.t().contiguous(), torch.randn(1, weight.shape[1], device=device)
    ways = {"one product, weight as stored": lambda: torch.nn.functional.linear(x, weight),
            "one product, transposed copy": lambda: x @ head,
            "last_logits, 8 slabs": lambda: last_logits(x, weight)}
    times = {k: [] for k in ways}
    with torch.inference_mode():
        for _ in range(repeats):
            for name, fn in ways.items():
                times[name].append(timed(fn, device))
    return {k: 1000 * statistics.median(v[5:]) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per decoder")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    device = get_device()
    torch.manual_seed(0)
    config = PretrainingConfig()
    model = MinimalLLM(config).to(device).eval()
    wide = MinimalLLM(dataclasses.replace(config, max_seq_len=512)).to(device).eval()
    wide.load_state_dict(model.state_dict())          # the same weights, a wider window
    hf, hf_wide = to_hf(model).eval(), to_hf(wide).eval()
    short = torch.tensor([[1]], device=device)         # 1 + 255 tokens fit the 256-token window
    long = torch.randint(1, config.vocab_size, (1, 200),
                         generator=torch.Generator().manual_seed(0)).to(device)
    results: dict[str, torch.Tensor] = {}
    runs = {
        "greedy, 1-token prompt: qwenlib, KV cache": qwenlib_decoder(model, short, results, "q1"),
        "greedy, 1-token prompt: qwenlib, recompute": qwenlib_decoder(model, short, results, "r1",
                                                                      use_cache=False),
        "greedy, 1-token prompt: original loop": original_decoder(model, short, results, "o1"),
        "greedy, 1-token prompt: transformers": transformers_decoder(hf, short, results, "t1"),
        "greedy, 200-token prompt: qwenlib, KV cache": qwenlib_decoder(wide, long, results, "q200"),
        "greedy, 200-token prompt: transformers": transformers_decoder(hf_wide, long, results, "t200"),
        "sampling, 1-token prompt: qwenlib": qwenlib_decoder(model, short, results, "qs", **SAMPLING),
        "sampling, 1-token prompt: transformers": transformers_decoder(hf, short, results, "ts",
                                                                       **SAMPLING),
    }
    for fn in runs.values():
        fn()  # warm-up
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    rate = {k: NEW_TOKENS / statistics.median(v) for k, v in times.items()}
    print(f"device {device}, {torch.get_num_threads()} threads; default config (untrained), "
          f"{NEW_TOKENS} new tokens, median of {args.repeats}; sampling = {SAMPLING}")
    for name, r in rate.items():
        print(f"{name:45} {r:8.1f} tokens/s")
    same = {k: torch.equal(results[a], results[b]) for k, (a, b) in
            {"recompute": ("q1", "r1"), "original loop": ("q1", "o1"),
             "transformers, 1-token prompt": ("q1", "t1"),
             "transformers, 200-token prompt": ("q200", "t200")}.items()}
    print("same greedy tokens as qwenlib's KV cache: "
          + ", ".join(f"{k} {v}" for k, v in same.items()))
    for case in ("greedy, 1-token prompt", "greedy, 200-token prompt", "sampling, 1-token prompt"):
        mine = rate[f"{case}: qwenlib" + (", KV cache" if case.startswith("greedy") else "")]
        print(f"{case}: qwenlib / transformers = {mine / rate[f'{case}: transformers']:.2f}x")
    cached = rate["greedy, 1-token prompt: qwenlib, KV cache"]
    layouts = output_layer_layouts(model, device)
    print("one decode step's output layer: " + ", ".join(f"{k} {v:.2f} ms" for k, v in layouts.items())
          + f" (as stored / last_logits = "
          f"{layouts['one product, weight as stored'] / layouts['last_logits, 8 slabs']:.1f}x)")
    print(f"KV cache / recompute = {cached / rate['greedy, 1-token prompt: qwenlib, recompute']:.1f}x, "
          f"KV cache / original loop = {cached / rate['greedy, 1-token prompt: original loop']:.1f}x")


if __name__ == "__main__":
    main()
