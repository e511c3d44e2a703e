"""What qwenlib writes, read by clients nobody here wrote: transformers across the declared
range (this file also runs in `make test-floors`, under transformers 4.51.1 and torch 2.9),
through AutoModelForCausalLM, AutoTokenizer and pipeline.

The folder is always exported under the pins (requirements.txt's transformers 5): a
subprocess without the floors on its path. Under the floors the reading side is then the
lowest transformers; under the pins both sides are the pins. The reference logits and
greedy text come from qwenlib in that same subprocess, so a reader that got RoPE's base
wrong cannot agree with itself. Every norm gain is random and rope_theta is 1e6: a
default gain or theta would hide a field the reader ignored.
"""

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

EXPORT_UNDER_THE_PINS = r"""
import json, sys
import torch
from qwenlib import MinimalLLM, PretrainingConfig, generate_text, load_and_cache_data, save_hf
from qwenlib.generation import generate_ids

out = sys.argv[1]
config = PretrainingConfig(vocab_size=8192, d_model=64, n_heads=4, n_kv_heads=2, head_dim=24,
                           d_ff=96, n_layers=2, max_seq_len=64, rope_theta=1e6,
                           tie_word_embeddings=False, max_tokens=3000, num_documents=20,
                           cache_dir=out + "/cache")
_, tokenizer, _ = load_and_cache_data(config, verbose=False)
torch.manual_seed(0)
model = MinimalLLM(config)
with torch.no_grad():
    for p in model.parameters():
        if p.ndim == 1:
            p.uniform_(0.5, 1.5)  # every RMSNorm gain
model.eval()
save_hf(model, tokenizer, out + "/hf")
ids = torch.randint(0, config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    torch.save(model(ids), out + "/logits.pt")
torch.save(ids, out + "/ids.pt")
prompt = "The os module"
greedy = torch.stack(list(generate_ids(model, tokenizer(prompt, return_tensors="pt").input_ids,
                                       16, temperature=0, eos_token_id=None)), 1)
json.dump({"transformers": __import__("transformers").__version__,
           "prompt_ids": tokenizer(prompt)["input_ids"], "greedy": greedy[0].tolist(),
           "text": generate_text(model, tokenizer, prompt, max_length=16, temperature=0)},
          open(out + "/reference.json", "w"))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A folder `save_hf` wrote under the pins, and qwenlib's own logits and text for it.
    Only under the floors (`make test-floors`): under the pins, writer and reader are the
    same transformers, which test_cli.py's export test already covers."""
    if os.environ.get("QWEN_COURSE_FLOORS") != "1":
        pytest.skip("reads a folder written under the pins with the lowest transformers: "
                    "runs in `make test-floors`")
    out = tmp_path_factory.mktemp("exported")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the pins, not the floors
    done = subprocess.run([sys.executable, "-c", EXPORT_UNDER_THE_PINS, str(out)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = json.loads((out / "reference.json").read_text())
    return out, reference


def test_the_folder_is_written_by_the_pins_and_read_here(exported):
    _, reference = exported
    assert reference["transformers"].split(".")[0] == "5"
    print(f"written by transformers {reference['transformers']}, "
          f"read by {transformers.__version__}")


def test_the_config_says_rope_theta_and_dtype_in_both_generations_forms(exported):
    out, _ = exported
    config = json.loads((out / "hf" / "config.json").read_text())
    assert config["rope_theta"] == 1e6 and config["rope_scaling"] is None
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 1e6}
    assert config["torch_dtype"] == config["dtype"] == "float32"
    tokenizer_config = json.loads((out / "hf" / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "local_files_only" not in tokenizer_config  # how qwenlib loaded it, offline


def test_auto_model_reads_the_same_logits_and_greedy_tokens(exported):
    out, reference = exported
    model = transformers.AutoModelForCausalLM.from_pretrained(out / "hf").eval()
    theta = getattr(model.config, "rope_theta", None) or model.config.rope_parameters["rope_theta"]
    assert theta == 1e6
    ids = torch.load(out / "ids.pt", weights_only=True)
    want = torch.load(out / "logits.pt", weights_only=True)
    with torch.no_grad():
        gap = (model(ids).logits - want).abs().max().item()
    print(f"max |logit difference| {gap:.1e}")
    assert gap <= 1e-5
    prompt = torch.tensor([reference["prompt_ids"]])
    with torch.no_grad():
        got = model.generate(prompt, do_sample=False, max_new_tokens=16, min_new_tokens=16)
    assert got[0, prompt.shape[1]:].tolist() == reference["greedy"]


def test_auto_tokenizer_and_pipeline_give_qwenlibs_text(exported):
    out, reference = exported
    tokenizer = transformers.AutoTokenizer.from_pretrained(out / "hf")
    assert tokenizer("The os module")["input_ids"] == reference["prompt_ids"]
    generator = transformers.pipeline("text-generation", model=str(out / "hf"), device="cpu")
    text = generator("The os module", do_sample=False, max_new_tokens=16)[0]["generated_text"]
    assert text == reference["text"]


def test_the_export_folder_has_the_permissions_save_pretrained_gives(tmp_path, offline):
    from qwenlib import MinimalLLM, PretrainingConfig, save_hf, to_hf
    from qwenlib.data import train_bpe_tokenizer

    model = MinimalLLM(PretrainingConfig(vocab_size=320, d_model=16, n_heads=2, n_kv_heads=1,
                                         d_ff=32, n_layers=1))
    tokenizer = train_bpe_tokenizer(["a few words to learn merges from"] * 4, 300)
    ours = save_hf(model, tokenizer, tmp_path / "ours")
    to_hf(model).save_pretrained(tmp_path / "theirs")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(ours) == mode(tmp_path / "theirs")
    assert mode(ours / "config.json") == mode(tmp_path / "theirs" / "config.json")


def test_a_bf16_to_hf_equals_the_reloaded_folder_at_1024_tokens(tmp_path, offline):
    """`to_hf` of a bf16 model keeps RoPE's frequencies in fp32, as from_pretrained does:
    a cast of transformers' `inv_freq` to bf16 moves the angles more the longer the text."""
    from qwenlib import MinimalLLM, PretrainingConfig, load_and_cache_data, save_hf, to_hf

    config = PretrainingConfig(vocab_size=8192, d_model=64, n_heads=4, n_kv_heads=2, d_ff=96,
                               n_layers=2, max_seq_len=1024, rope_theta=1e6, max_tokens=3000,
                               num_documents=20, cache_dir=str(tmp_path / "cache"))
    _, tokenizer, _ = load_and_cache_data(config, verbose=False)
    from conftest import random_gains

    torch.manual_seed(0)
    model = random_gains(MinimalLLM(config), matrix_scale=5).to(torch.bfloat16)  # std 0.1
    hf = to_hf(model)
    assert all(b.dtype == torch.float32 for n, b in hf.named_buffers() if n.endswith("inv_freq"))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(
        save_hf(model, tokenizer, tmp_path / "hf"), torch_dtype=torch.bfloat16).eval()
    ids = torch.randint(0, config.vocab_size, (1, 1024), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = hf(ids).logits.float(), reloaded(ids).logits.float()
    gap = (ours - theirs).abs().max().item()
    print(f"bf16, 1,024 tokens: max |logit difference| {gap:.1e}")
    assert gap <= 1e-6
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))


def test_an_export_into_a_link_or_onto_a_full_disk_is_one_error_and_changes_nothing(
        tmp_path, offline, monkeypatch):
    from qwenlib import MinimalLLM, PretrainingConfig, save_hf
    from qwenlib.data import train_bpe_tokenizer

    model = MinimalLLM(PretrainingConfig(vocab_size=320, d_model=16, n_heads=2, n_kv_heads=1,
                                         d_ff=32, n_layers=1))
    tokenizer = train_bpe_tokenizer(["a few words to learn merges from"] * 4, 300)
    earlier = save_hf(model, tokenizer, tmp_path / "real")
    (tmp_path / "link").symlink_to(earlier)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for link in ("link", "dangling"):
        with pytest.raises(FileExistsError, match=f"{link} is a symbolic link"):
            save_hf(model, tokenizer, tmp_path / link)
        assert (tmp_path / link).is_symlink()
    before = sorted(p.name for p in tmp_path.iterdir())

    def disk_full(self, *args, **kwargs):
        from safetensors import SafetensorError
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: "
                              "StorageFull, message: \"No space left on device\" })")

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", disk_full)
    with pytest.raises(OSError, match=r"real: writing the export failed \(Error while "
                                      r"serializing.*No space left on device"):
        save_hf(model, tokenizer, earlier)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no staging folder left
    assert (earlier / "model.safetensors").is_file()           # the earlier export is whole
