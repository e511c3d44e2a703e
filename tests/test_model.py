"""The model is exactly transformers' Qwen3: chapters 2-5."""

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM
from transformers.models.qwen3.modeling_qwen3 import (Qwen3RMSNorm, Qwen3RotaryEmbedding,
                                                      apply_rotary_pos_emb)

from qwenlib import MinimalLLM, PretrainingConfig, RMSNorm, Rotary, from_hf, to_hf
from qwenlib.hf import to_hf_config

SHAPES = {
    "default (4 q heads, 2 kv heads)": {},
    "kv heads = q heads (MHA)": dict(n_kv_heads=4),
    "one kv head (MQA)": dict(n_kv_heads=1),
    "6 layers, 8 heads, other vocab and theta": dict(n_layers=6, d_model=64, n_heads=8,
                                                     n_kv_heads=2, d_ff=176, vocab_size=3000,
                                                     rope_theta=1e6, builtin_vocab_size=3000),
}


def random_ids(config, batch=3, length=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, length), generator=g)


def test_the_default_model_has_7029824_parameters_counted_as_transformers_counts_them():
    """The course's headline number, counted the way transformers' own Qwen3 counts the same
    model (the tied embedding once), and the sum of the parts a reader adds up in chapter 5."""
    c = PretrainingConfig()
    model = MinimalLLM(c)
    assert model.lm_head.weight is model.embed_tokens.weight
    per_layer = (c.d_model * c.head_dim * (2 * c.n_heads + 2 * c.n_kv_heads)   # q, k, v, o
                 + 2 * c.head_dim + 3 * c.d_model * c.d_ff + 2 * c.d_model)   # head norms, MLP, norms
    by_parts = c.vocab_size * c.d_model + c.n_layers * per_layer + c.d_model
    assert model.num_parameters() == to_hf(model).num_parameters() == by_parts == 7_029_824


def test_a_printed_model_shows_each_norms_width_and_eps():
    """What `print(model)` shows in the chapters: every norm with its width and eps."""
    text = repr(MinimalLLM(PretrainingConfig(vocab_size=300, rms_norm_eps=1e-5)))
    assert "(input_layernorm): RMSNorm(128, eps=1e-05)" in text
    assert "(q_norm): RMSNorm(32, eps=1e-05)" in text


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_logits_equal_transformers_qwen3(shape):
    torch.manual_seed(0)
    config = PretrainingConfig(**shape)
    model = MinimalLLM(config).eval()
    hf = to_hf(model)
    assert isinstance(hf, Qwen3ForCausalLM) and not hf.training
    ids = random_ids(config)
    with torch.no_grad():
        gap = (model(ids) - hf(ids).logits).abs().max().item()
    print(f"max |logit difference| {shape or 'default'}: {gap:.2e}")
    assert gap <= 1e-5


def test_logits_equal_after_save_pretrained_and_automodel(tmp_path):
    torch.manual_seed(0)
    config = PretrainingConfig()
    model = MinimalLLM(config).eval()
    to_hf(model).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = random_ids(config)
    with torch.no_grad():
        assert (model(ids) - loaded(ids).logits).abs().max() <= 1e-5


def test_from_hf_round_trips_a_randomly_initialised_qwen3():
    torch.manual_seed(0)
    hf = Qwen3ForCausalLM(to_hf_config(PretrainingConfig(**SHAPES["one kv head (MQA)"]))).eval()
    model, config = from_hf(hf)
    assert config.n_kv_heads == 1 and config.d_model == 128
    ids = random_ids(config)
    with torch.no_grad():
        assert (model.eval()(ids) - hf(ids).logits).abs().max() <= 1e-5
        again = to_hf(model)
        assert all(torch.equal(a, b) for a, b in zip(hf.state_dict().values(),
                                                      again.state_dict().values()))


@pytest.mark.parametrize("change, field", [
    (dict(attention_bias=True), "attention_bias"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(use_sliding_window=True, sliding_window=64, max_window_layers=0), "sliding_window"),
    (dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
     "rope_parameters"),
])
def test_from_hf_names_the_field_it_cannot_represent(change, field):
    kwargs = dict(vocab_size=500, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  tie_word_embeddings=True, max_position_embeddings=64)
    hf = Qwen3ForCausalLM(Qwen3Config(**{**kwargs, **change}))
    with pytest.raises(ValueError, match=f"cannot convert: the transformers config has {field}="):
        from_hf(hf)


@pytest.mark.parametrize("ids, error, words", [
    (torch.zeros(1, 257, dtype=torch.long), ValueError, "exceed max_seq_len=256"),
    (torch.tensor([[5, 49152]]), ValueError, r"must lie in \[0, vocab_size=49152\)"),
    (torch.tensor([[-1, 3]]), ValueError, "min -1"),
    (torch.tensor([[1.0, 2.0]]), TypeError, "integer tensor of token ids"),
    ([[1, 2, 3]], TypeError, "integer tensor of token ids"),
    (torch.tensor([1, 2, 3]), ValueError, r"shape \(batch, seq_len\)"),
])
def test_bad_input_gets_a_clear_error(ids, error, words):
    model = MinimalLLM(PretrainingConfig(n_layers=1))
    with pytest.raises(error, match=words):
        model(ids)


def test_kv_cache_gives_the_same_logits_as_a_full_forward():
    torch.manual_seed(0)
    config = PretrainingConfig()
    model = MinimalLLM(config).eval()
    ids = random_ids(config, length=256)
    with torch.no_grad():
        full = model(ids)
        pieces, cache = [], None
        for start, end in [(0, 100), (100, 101), (101, 180), (180, 256)]:
            logits, cache = model(ids[:, start:end], past_key_values=cache, use_cache=True)
            pieces.append(logits)
        with pytest.raises(ValueError, match="257 positions"):
            model(ids[:, :1], past_key_values=cache, use_cache=True)
    assert (torch.cat(pieces, 1) - full).abs().max() <= 1e-5
    assert cache[0].length == 256
    assert cache[0].keys[:, :, :256].shape == (3, config.n_kv_heads, 256, config.head_dim)


def test_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = MinimalLLM(PretrainingConfig(n_layers=1))
    ids = random_ids(model.config, length=16)
    with torch.no_grad():
        assert not torch.equal(model.train()(ids), model(ids))
        assert torch.equal(model.eval()(ids), model(ids))


def test_dropout_drops_each_branch_output_at_the_configured_rate():
    torch.manual_seed(0)
    model = MinimalLLM(PretrainingConfig(n_layers=1, dropout=0.3)).train()
    layer, seen = model.layers[0], {}
    layer.self_attn.register_forward_hook(lambda m, i, out: seen.setdefault("attention", out))
    layer.mlp.register_forward_hook(lambda m, i, out: seen.setdefault("mlp", out))
    layer.dropout.register_forward_hook(lambda m, i, out: seen.setdefault("dropped", []).append((i[0], out)))
    with torch.no_grad():
        model(random_ids(model.config, length=64))
    (attention_in, attention_out), (mlp_in, mlp_out) = seen["dropped"]   # exactly two calls
    assert torch.equal(attention_in, seen["attention"]) and torch.equal(mlp_in, seen["mlp"])
    for before, after in [(attention_in, attention_out), (mlp_in, mlp_out)]:
        kept = after != 0
        assert 0.25 < 1 - kept.float().mean().item() < 0.35                 # about 30% dropped
        assert torch.allclose(after[kept], before[kept] / 0.7)            # the rest scaled up


def test_rmsnorm_matches_references_and_computes_in_fp32():
    torch.manual_seed(0)
    x = torch.randn(4, 10, 64) * 300  # squares overflow fp16
    ours, hf = RMSNorm(64), Qwen3RMSNorm(64)
    hf.weight.data = ours.weight.data = torch.rand(64) + 0.5
    assert torch.equal(ours(x), hf(x))
    assert torch.equal(ours(x), torch.nn.functional.rms_norm(x, (64,), ours.weight, 1e-6))
    half = ours.half()(x.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert torch.allclose(half.float(), ours.float()(x), atol=1e-2, rtol=1e-2)


def test_rope_matches_transformers_at_an_offset_and_depends_only_on_distance():
    rotary = Rotary(32, 256, 10000.0)
    q, k = torch.randn(2, 4, 10, 32), torch.randn(2, 2, 10, 32)
    config = Qwen3Config(hidden_size=128, num_attention_heads=4, head_dim=32,
                         max_position_embeddings=256)
    cos, sin = Qwen3RotaryEmbedding(config)(q, torch.arange(50, 60)[None].expand(2, 10))
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos, sin)
    assert (rotary(q, offset=50) - q_ref).abs().max() <= 1e-6
    assert (rotary(k, offset=50) - k_ref).abs().max() <= 1e-6
    one_q, one_k = torch.randn(32), torch.randn(32)
    at = lambda v, p: rotary(v.expand(p + 1, 32))[p]  # noqa: E731
    assert torch.allclose(at(one_q, 3) @ at(one_k, 10), at(one_q, 103) @ at(one_k, 110), atol=1e-4)
    with pytest.raises(ValueError, match="cover 256 positions"):
        rotary(q, offset=250)


def test_kv_cache_keeps_every_position_when_it_grows_and_copies_are_independent():
    from qwenlib.attention import KVCache
    g = torch.Generator().manual_seed(0)
    pieces = [torch.randn(2, 3, t, 4, generator=g) for t in (5, 1, 1, 7, 1)]
    cache = KVCache()                        # no size given: it grows as needed
    for i, k in enumerate(pieces):
        keys, values = cache.append(k, -k)
        if i == 2:
            branch = cache.copy()
    assert cache.length == 15 and cache.capacity >= 15
    assert torch.equal(keys, torch.cat(pieces, 2)) and torch.equal(values, -torch.cat(pieces, 2))
    branch.append(pieces[0][:, :, :1] + 100, pieces[0][:, :, :1])
    assert branch.length == 8 and cache.length == 15
    assert torch.equal(cache.keys[:, :, 7], pieces[3][:, :, 0])   # the original is untouched
    sized = KVCache(capacity=16)
    sized.append(pieces[0], pieces[0])
    first = sized.keys
    sized.append(pieces[3], pieces[3])
    assert sized.keys is first               # told its size, it never reallocates
