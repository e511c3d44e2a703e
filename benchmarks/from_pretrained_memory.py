"""Peak memory of `qwenlib.from_pretrained` for a model of Qwen3-0.6B's exact shape.

A random-weight Qwen3ForCausalLM with the released config's widths (28 layers, 1024 wide,
16 query heads and 8 key/value heads of 128, vocabulary 151,936, tied, bf16) is written with
`save_pretrained` into a temporary folder; then a fresh process loads it with
`qwenlib.from_pretrained` and reports its peak resident memory (ru_maxrss) against the size
of the weights. Loading one tensor at a time into a model built on the meta device should
cost the weights once, plus the interpreter and libraries, never two copies.

    python benchmarks/from_pretrained_memory.py            # 0.6B shape, about 1.2 GB on disk
    python benchmarks/from_pretrained_memory.py --layers 2  # quicker
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

WRITE = r"""
import sys, torch
from transformers import Qwen3Config, Qwen3ForCausalLM
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast
config = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                     num_hidden_layers=int(sys.argv[2]), num_attention_heads=16,
                     num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                     rms_norm_eps=1e-6, tie_word_embeddings=True,
                     rope_parameters={"rope_type": "default", "rope_theta": 1e6})
torch.manual_seed(0)
with torch.device("meta"):
    model = Qwen3ForCausalLM(config)
model = model.to_empty(device="cpu").to(torch.bfloat16)
model.tie_weights()  # to_empty gave the output layer storage of its own
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.02)
model.save_pretrained(sys.argv[1])
vocab = {"<unk>": 0, "a": 1}
PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                        eos_token="<unk>").save_pretrained(sys.argv[1])
print(sum(p.numel() for p in model.parameters()))
"""

LOAD = r"""
import resource, sys, time, torch
import qwenlib
from transformers import AutoConfig, AutoTokenizer  # what from_pretrained imports, counted before
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
model, tokenizer, config = qwenlib.from_pretrained(sys.argv[1])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
print(f"{model.num_parameters():,} parameters ({weights:,.0f} MiB in {model.embed_tokens.weight.dtype}), "
      f"loaded in {seconds:.1f} s; peak RSS {peak:,.0f} MiB (before loading: {before:,.0f} MiB); "
      f"peak minus before = {(peak - before) / weights:.2f} x the weights")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=28, help="of Qwen3-0.6B's 28 (default all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        written = subprocess.run([sys.executable, "-c", WRITE, folder, str(args.layers)],
                                 capture_output=True, text=True, check=True)
        print(f"wrote a random Qwen3-0.6B-shaped model ({args.layers} layers, "
              f"{int(written.stdout.split()[-1]):,} parameters, bf16) with save_pretrained")
        loaded = subprocess.run([sys.executable, "-c", LOAD, folder], capture_output=True,
                                text=True, check=True)
        print(loaded.stdout.strip())


if __name__ == "__main__":
    main()
