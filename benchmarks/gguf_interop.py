"""GGUF files written by qwenlib, run in llama.cpp itself (through llama-cpp-python).

`make interop` installs llama-cpp-python (it compiles llama.cpp once, about ten minutes on
two cores) and runs this. For each model it exports the file with `save_gguf`, loads it in
llama.cpp and prints:

- the largest difference between llama.cpp's logits and qwenlib's over a prompt, with f32
  weights and llama.cpp's KV cache in f32, then in its default f16, then f16 weights;
- whether the greedy continuations (30 tokens) are the same tokens;

and for each of the three tokenizer kinds qwenlib names for llama.cpp (the course's
GPT-2-style built-in tokenizer, SmolLM's digit-splitting kind, Qwen2/Qwen3's expression;
the last two trained here on the built-in corpus, since the Hub is not reachable), how many
test texts llama.cpp splits into exactly the ids `tokenizers` gives. Models have random norm
gains and weights of std 0.1, rope_theta 1e6; one is untied with head_dim 24 != 64 / 4.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qwenlib import MinimalLLM, PretrainingConfig, load_and_cache_data, save_gguf  # noqa: E402
from qwenlib.data import builtin_documents  # noqa: E402
from qwenlib.generation import generate_ids  # noqa: E402
from qwenlib.gguf import QWEN2_PATTERN  # noqa: E402

TRICKY = ["The os module", "def f(x):\n    return x ** 2  # 42", "  two  spaces\tand a tab\n\n\n",
          "It's, you'll, I'D, they're", "3.14159 and 1,000,000 and 0x1F", "Ünïcödé — “quotes” ½ €5",
          "日本語のテキスト", "emoji 🙂🚀 end", "a\r\nb\rc", "   leading", "trailing   ",
          "<|endoftext|> is plain text here", "x=1;y=2\nprint(x+y)", "ABC abc ABC-abc", "....!!!???"]


def texts_to_compare(n: int = 200) -> list[str]:
    """TRICKY plus n slices of the built-in corpus (a fixed random choice)."""
    rng = random.Random(0)
    docs = [text for _, text in builtin_documents()]
    out = list(TRICKY)
    for _ in range(n):
        doc = rng.choice(docs)
        start = rng.randrange(max(1, len(doc) - 200))
        out.append(doc[start:start + rng.randrange(20, 200)])
    return out


def trained_tokenizer(kind: str, vocab_size: int = 4096):
    """A byte-level BPE of SmolLM's or Qwen2's splitting kind, trained on the built-in corpus."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, trainers
    from tokenizers import pre_tokenizers as pre
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    if kind == "smollm":
        bpe.pre_tokenizer = pre.Sequence([pre.Digits(individual_digits=True),
                                          pre.ByteLevel(add_prefix_space=False)])
    else:
        bpe.normalizer = normalizers.NFC()
        bpe.pre_tokenizer = pre.Sequence([pre.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
                                          pre.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([text for _, text in builtin_documents()], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", pad_token="<|endoftext|>")


def randomised(**fields) -> MinimalLLM:
    torch.manual_seed(0)
    model = MinimalLLM(PretrainingConfig(**fields))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(5) if p.ndim == 2 else p.uniform_(0.5, 1.5)
    return model.eval()


def compare_model(llama_cpp, model, tokenizer, path: Path, label: str, cache: str) -> None:
    """`cache`: the KV cache's type in llama.cpp, "f16" (its default) or "f32"."""
    kind = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}[cache]
    llm = llama_cpp.Llama(str(path), n_ctx=model.config.max_seq_len, logits_all=True,
                          verbose=False, n_threads=2, type_k=kind, type_v=kind)
    try:
        prompt = tokenizer("The os module lets a program work with files and folders, and",
                           add_special_tokens=False)["input_ids"]
        llm.eval(prompt)
        with torch.no_grad():
            ours = model(torch.tensor([prompt]))[0].numpy()
        gap = np.abs(np.array(llm.scores[:len(prompt)]) - ours).max()
        greedy = torch.stack(list(generate_ids(model, torch.tensor([prompt]), 30, temperature=0)),
                             1)[0].tolist()
        llm.reset()
        theirs = [t for t, _ in zip(llm.generate(prompt, temp=0.0, top_k=1), range(30))]
        same = sum(a == b for a, b in zip(greedy, theirs))
        print(f"{label:52} max |logit difference| {gap:.1e} (logits up to {np.abs(ours).max():.1f}); "
              f"greedy 30 tokens equal: {greedy == theirs} ({same}/30 positions)")
    finally:
        llm.close()


def compare_tokenizer(llama_cpp, tokenizer, path: Path, label: str, texts: list[str]) -> None:
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    try:
        # special=True: an "<|endoftext|>" in the text is the special token, as in tokenizers
        same = [llm.tokenize(t.encode(), add_bos=False, special=True)
                == tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        back = [llm.detokenize(tokenizer(t, add_special_tokens=False)["input_ids"],
                               special=True).decode(
                    "utf-8", "replace") == tokenizer.decode(tokenizer(t, add_special_tokens=False)
                                                            ["input_ids"]) for t in texts]
        print(f"{label:52} {sum(same)}/{len(texts)} texts split into the same ids, "
              f"{sum(back)}/{len(texts)} decoded to the same text")
    finally:
        llm.close()


def main() -> int:
    try:
        import llama_cpp
    except ImportError:
        print("llama-cpp-python is not installed: `make interop` installs it and runs this")
        return 0
    print(f"llama-cpp-python {llama_cpp.__version__}")
    work = Path(tempfile.mkdtemp(prefix="gguf-interop-"))
    config = PretrainingConfig(max_tokens=3000, num_documents=20, vocab_size=8192,
                               cache_dir=str(work / "cache"))
    _, builtin, _ = load_and_cache_data(config, verbose=False)
    untied = dict(vocab_size=8192, d_model=64, n_heads=4, n_kv_heads=2, head_dim=24, d_ff=96,
                  n_layers=2, max_seq_len=64, rope_theta=1e6, tie_word_embeddings=False)
    default_shape = dict(max_seq_len=64, rope_theta=1e6)  # 49,152 rows for 8,192 tokens, tied
    for fields, name in ((untied, "untied, head_dim 24"), (default_shape, "default shape, tied")):
        model = randomised(**fields)
        for dtype, cache in (("f32", "f32"), ("f32", "f16"), ("f16", "f16")):
            path = save_gguf(model, builtin, work / f"{name[:7]}-{dtype}.gguf", dtype)
            compare_model(llama_cpp, model, builtin, path, f"{name}, {dtype} weights, {cache} KV cache:",
                          cache)
    texts = texts_to_compare()
    small = randomised(**{**untied, "vocab_size": 4096})
    for kind, tokenizer in (("gpt-2", builtin), ("smollm", trained_tokenizer("smollm")),
                            ("qwen2", trained_tokenizer("qwen2"))):
        model = small if len(tokenizer) <= 4096 else randomised(**untied)
        path = save_gguf(model, tokenizer, work / f"tok-{kind}.gguf")
        compare_tokenizer(llama_cpp, tokenizer, path, f"tokenizer '{kind}':", texts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
