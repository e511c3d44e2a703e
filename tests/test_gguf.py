"""GGUF export (notebook B1): the file says what the model is and holds exactly its weights,
read back with `gguf`'s own reader (llama.cpp's Python package). Running it in llama.cpp
itself is `make interop` (benchmarks/gguf_interop.py), outside `make test`."""

import json

import numpy as np
import pytest
import torch

from conftest import random_gains
from qwenlib import MinimalLLM, PretrainingConfig, load_and_cache_data, save_gguf
from qwenlib.gguf import QWEN2_PATTERN, gguf_tensor_name, pre_tokenizer_name

gguf = pytest.importorskip("gguf")

UNTIED = dict(vocab_size=8192, d_model=64, n_heads=4, n_kv_heads=2, head_dim=24, d_ff=96,
              n_layers=2, max_seq_len=64, rope_theta=1e6, rms_norm_eps=1e-5,
              tie_word_embeddings=False)


@pytest.fixture(scope="module")
def tokenizer(shared_cache):
    config = PretrainingConfig(max_tokens=3000, num_documents=20, vocab_size=8192,
                               cache_dir=str(shared_cache))
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    return load_and_cache_data(config, verbose=False)[1]


def randomised(**fields) -> MinimalLLM:
    torch.manual_seed(0)
    return random_gains(MinimalLLM(PretrainingConfig(**fields)))


def read(path):
    reader = gguf.GGUFReader(path)
    fields = {key: field.contents() for key, field in reader.fields.items()}
    tensors = {t.name: np.asarray(t.data).reshape([int(n) for n in reversed(t.shape)])
               for t in reader.tensors}
    return fields, tensors


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_the_file_holds_the_architecture_and_exactly_the_weights(tokenizer, tmp_path, dtype):
    model = randomised(**UNTIED)
    fields, tensors = read(save_gguf(model, tokenizer, tmp_path / "m.gguf", dtype))
    c = model.config
    expected = {"general.architecture": "qwen3", "qwen3.block_count": 2,
                "qwen3.context_length": 64, "qwen3.embedding_length": 64,
                "qwen3.feed_forward_length": 96, "qwen3.attention.head_count": 4,
                "qwen3.attention.head_count_kv": 2, "qwen3.attention.key_length": 24,
                "qwen3.attention.value_length": 24, "qwen3.rope.dimension_count": 24,
                "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
                "tokenizer.ggml.eos_token_id": tokenizer.eos_token_id,
                "general.file_type": 0 if dtype == "f32" else 1}
    for key, value in expected.items():
        assert fields[key] == value, key
    assert fields["qwen3.rope.freq_base"] == pytest.approx(1e6)
    assert fields["qwen3.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert len(fields["tokenizer.ggml.tokens"]) == c.vocab_size
    state = model.state_dict()
    assert set(tensors) == {gguf_tensor_name(k) for k in state}
    for name, weight in state.items():
        stored, want = tensors[gguf_tensor_name(name)], weight.numpy()
        if dtype == "f16" and want.ndim == 2:
            assert stored.dtype == np.float16
            want = want.astype(np.float16)
        else:
            assert stored.dtype == np.float32, name   # gains stay f32 in an f16 file
        assert stored.shape == want.shape and np.array_equal(stored, want), name


# llama.cpp's names for a Qwen3 (gguf.constants.TENSOR_NAMES), written out here so that a
# wrong entry in qwenlib's table cannot agree with itself
LLAMA_CPP_NAMES = {
    "embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "layers.1.input_layernorm.weight": "blk.1.attn_norm.weight",
    "layers.1.self_attn.q_proj.weight": "blk.1.attn_q.weight",
    "layers.1.self_attn.k_proj.weight": "blk.1.attn_k.weight",
    "layers.1.self_attn.v_proj.weight": "blk.1.attn_v.weight",
    "layers.1.self_attn.o_proj.weight": "blk.1.attn_output.weight",
    "layers.1.self_attn.q_norm.weight": "blk.1.attn_q_norm.weight",
    "layers.1.self_attn.k_norm.weight": "blk.1.attn_k_norm.weight",
    "layers.1.post_attention_layernorm.weight": "blk.1.ffn_norm.weight",
    "layers.1.mlp.gate_proj.weight": "blk.1.ffn_gate.weight",
    "layers.1.mlp.up_proj.weight": "blk.1.ffn_up.weight",
    "layers.1.mlp.down_proj.weight": "blk.1.ffn_down.weight",
}


def test_every_weight_gets_the_name_llama_cpps_qwen3_loader_asks_for(tokenizer, tmp_path):
    model = randomised(**UNTIED)
    _, tensors = read(save_gguf(model, tokenizer, tmp_path / "m.gguf"))
    state = model.state_dict()
    for ours, theirs in LLAMA_CPP_NAMES.items():
        assert np.array_equal(tensors[theirs], state[ours].numpy()), (ours, theirs)
    arch = gguf.MODEL_ARCH.QWEN3  # and each is one the gguf package lists for the architecture
    known = {gguf.TENSOR_NAMES[t].format(bid=1) + ".weight" for t in gguf.MODEL_TENSORS[arch]}
    assert set(LLAMA_CPP_NAMES.values()) <= known
    with pytest.raises(ValueError, match="no GGUF name"):
        gguf_tensor_name("layers.0.self_attn.rotary.inv_freq")


def test_a_tied_output_layer_is_stored_once(tokenizer, tmp_path):
    model = randomised(**{**UNTIED, "tie_word_embeddings": True})
    _, tensors = read(save_gguf(model, tokenizer, tmp_path / "tied.gguf"))
    assert "token_embd.weight" in tensors and "output.weight" not in tensors


def test_unused_embedding_rows_get_placeholders_and_special_tokens_are_control(tokenizer, tmp_path):
    model = randomised(**{**UNTIED, "vocab_size": 8192 + 40})  # more rows than tokens
    fields, _ = read(save_gguf(model, tokenizer, tmp_path / "m.gguf"))
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == 8192 + 40
    assert tokens[8192] == "[PAD8192]" and types[8192] == 5 and types[-1] == 5
    eos = tokenizer.eos_token_id
    assert tokens[eos] == "<|endoftext|>" and types[eos] == 3
    assert tokens[300] == tokenizer.convert_ids_to_tokens(300) and types[300] == 1
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert fields["tokenizer.ggml.merges"][:3] == [m if isinstance(m, str) else " ".join(m)
                                                   for m in merges[:3]]


def _tokenizer_json(pre_tokenizer, normalizer=None) -> dict:
    from tokenizers import Tokenizer, models
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizer
    if normalizer is not None:
        bpe.normalizer = normalizer
    return json.loads(bpe.to_str())


def test_the_splitting_rule_is_named_as_llama_cpp_knows_it_or_refused():
    from tokenizers import Regex, normalizers
    from tokenizers import pre_tokenizers as pre

    assert pre_tokenizer_name(_tokenizer_json(pre.ByteLevel(add_prefix_space=False))) == "gpt-2"
    smollm = pre.Sequence([pre.Digits(individual_digits=True), pre.ByteLevel(add_prefix_space=False)])
    assert pre_tokenizer_name(_tokenizer_json(smollm)) == "smollm"
    qwen = pre.Sequence([pre.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
                         pre.ByteLevel(add_prefix_space=False, use_regex=False)])
    assert pre_tokenizer_name(_tokenizer_json(qwen, normalizers.NFC())) == "qwen2"
    for other in (pre.ByteLevel(add_prefix_space=True), pre.Metaspace(),
                  pre.Sequence([pre.Digits(individual_digits=False), pre.ByteLevel(add_prefix_space=False)]),
                  pre.Sequence([pre.Split(Regex(r"\s+"), behavior="isolated"),
                                pre.ByteLevel(add_prefix_space=False, use_regex=False)])):
        with pytest.raises(ValueError, match="llama.cpp does not know by name"):
            pre_tokenizer_name(_tokenizer_json(other))
    with pytest.raises(ValueError, match="does not know by name"):  # a normalizer changes the text
        pre_tokenizer_name(_tokenizer_json(pre.ByteLevel(add_prefix_space=False), normalizers.NFKC()))


def test_save_gguf_replaces_only_an_earlier_gguf_file(tokenizer, tmp_path):
    model = randomised(**UNTIED)
    notes = tmp_path / "notes.gguf"
    notes.write_text("my notes")
    with pytest.raises(FileExistsError, match="is not a GGUF file"):
        save_gguf(model, tokenizer, notes)
    assert notes.read_text() == "my notes"
    with pytest.raises(IsADirectoryError, match="give save_gguf .* a file name"):
        save_gguf(model, tokenizer, tmp_path)
    path = save_gguf(model, tokenizer, tmp_path / "m.gguf", "f16")
    save_gguf(model, tokenizer, path, "f32")  # an earlier export is replaced
    assert read(path)[0]["general.file_type"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "notes.gguf"]


def test_a_failed_export_leaves_the_earlier_file_and_no_staging_file(tokenizer, tmp_path, monkeypatch):
    model = randomised(**UNTIED)
    path = save_gguf(model, tokenizer, tmp_path / "m.gguf")
    before = path.read_bytes()

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_gguf(model, tokenizer, path, "f16")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_a_tokenizer_with_ids_past_the_embedding_is_refused(tokenizer, tmp_path):
    model = randomised(**{**UNTIED, "vocab_size": 4096})
    with pytest.raises(ValueError, match="only 4,096 rows: it is not the model's tokenizer"):
        save_gguf(model, tokenizer, tmp_path / "m.gguf")
    assert not any(tmp_path.iterdir())
