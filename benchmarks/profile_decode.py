"""Where one greedy decode step's time goes (default config, KV cache), part by part.

`generate.py` compares whole generations; this script splits one decode step (one new
token after a 100-token prompt) into what it is made of, each part timed in a loop of its
own in this one process (the argmax line is net of the output layer), and then prints
`torch.profiler`'s table of the operators of 64 whole decode steps. On the CPU the output
layer is a 25 MB read per token; most of the rest is the fixed cost of calling many small
operators.

    python benchmarks/profile_decode.py
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from _timing import timed
from qwenlib import MinimalLLM, PretrainingConfig, get_device
from qwenlib.attention import KVCache
from qwenlib.generation import generate_ids, last_logits

PROMPT = 100


def per_call_us(fn, device, repeats: int = 300) -> float:
    """Median over 5 rounds of the mean time of `repeats` calls, in microseconds."""
    for _ in range(20):
        fn()

    def many():
        for _ in range(repeats):
            fn()
    return statistics.median(timed(many, device) for _ in range(5)) / repeats * 1e6


def main() -> None:
    device = get_device()
    torch.manual_seed(0)
    config = PretrainingConfig()
    model = MinimalLLM(config).to(device).eval()
    weight = model.lm_head.weight
    token = torch.tensor([[1]], device=device)
    with torch.inference_mode():
        caches = [KVCache(config.max_seq_len) for _ in model.layers]
        prompt = torch.randint(0, config.vocab_size, (1, PROMPT), device=device)
        model.hidden_states(prompt, caches, use_cache=True, check_ids=False)

        def blocks():  # one new token through the embedding, the 3 blocks and the final norm
            for cache in caches:
                cache.length = PROMPT
            return model.hidden_states(token, caches, use_cache=True, check_ids=False)[0]

        hidden = blocks()[:, -1]
        layer, x = model.layers[0], torch.randn(1, 1, config.d_model, device=device)
        attn, q = layer.self_attn, torch.randn(1, config.n_heads, 1, config.head_dim, device=device)

        def attention():
            caches[0].length = PROMPT
            return attn(x, caches[0], use_cache=True)

        def block():
            caches[0].length = PROMPT
            return layer(x, caches[0], use_cache=True)

        parts = {
            "the 3 blocks, embedding and final norm": blocks,
            "output layer (last_logits: 8 slabs, one bmm)": lambda: last_logits(hidden, weight),
            "output layer (one product, F.linear)": lambda: F.linear(hidden, weight),
            "argmax over the vocabulary": lambda: torch.argmax(last_logits(hidden, weight), -1),
            "one block (with the cache)": block,
            "  its attention (with the cache)": attention,
            "  its MLP": lambda: layer.mlp(x),
            "  one RMSNorm (13 per token)": lambda: layer.input_layernorm(x),
            "  one RoPE call (6 per token)": lambda: attn.rotary(q, offset=PROMPT),
            "  one 128 x 128 linear layer": lambda: attn.q_proj(x),
        }
        times = {name: per_call_us(fn, device) for name, fn in parts.items()}
    times["argmax over the vocabulary"] -= times["output layer (last_logits: 8 slabs, one bmm)"]
    steps = 256
    whole = timed(lambda: [None for _ in generate_ids(model, token, steps, temperature=0)],
                  device) / steps * 1e6
    print(f"device {device}, {torch.get_num_threads()} threads; default config, one greedy "
          f"decode step after a {PROMPT}-token prompt, median of 5 rounds per part")
    label = "a whole step of generate_ids (256 new tokens from a 1-token prompt)"
    print(f"{label:70} {whole:8.0f} us")
    for name, us in times.items():
        print(f"{name:70} {us:8.0f} us")
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in generate_ids(model, token, 64, temperature=0):
            pass
    print("torch.profiler, 64 decode steps (self CPU time):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
