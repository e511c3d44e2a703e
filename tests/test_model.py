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


def test_rope_builds_its_tables_on_the_inputs_device_and_returns_its_dtype():
    """The meta device stands in for a GPU: a table made on the CPU would not mix with it."""
    rotary = Rotary(32, 256)
    out = rotary(torch.empty(2, 4, 10, 32, device="meta"))
    assert out.device.type == "meta" and rotary._cos.device.type == "meta"
    x = torch.randn(2, 4, 10, 32, dtype=torch.bfloat16)
    assert Rotary(32, 256)(x).dtype == torch.bfloat16            # the fp32 tables cast to x's
    assert torch.equal(Rotary(32, 256)(x)[..., 0, :], x[..., 0, :])  # position 0: no rotation
    assert torch.equal(Rotary(32, 256)(x.float()), Rotary(32, 256, theta=10000.0)(x.float()))


def test_rope_tables_cover_the_positions_used_rounded_up_to_a_power_of_two_and_are_reused():
    rotary = Rotary(32, 12)
    sizes = []
    for T in (1, 5, 8, 3, 9):
        rotary(torch.randn(1, 1, T, 32))
        sizes.append(len(rotary._cos))
    assert sizes == [1, 8, 8, 8, 12]                 # 9 would round to 16: max_seq_len caps it
    table = rotary._cos
    rotary(torch.randn(1, 1, 12, 32))
    assert rotary._cos is table                      # long enough, same device: not rebuilt


def test_rope_refuses_positions_past_its_tables_and_an_odd_head_dim_in_one_line():
    with pytest.raises(ValueError) as err:
        Rotary(32, 256)(torch.randn(1, 1, 10, 32), offset=250)
    assert str(err.value) == ("positions up to 259 requested but RoPE tables cover 256 positions "
                              "(max_seq_len); use a shorter input or a model built with a larger "
                              "max_seq_len")
    with pytest.raises(ValueError, match="^head_dim=31 must be even: RoPE rotates pairs of channels$"):
        Rotary(31, 256)


ATTENTION = dict(d_model=64, n_heads=4, n_kv_heads=2, max_seq_len=32, rope_theta=500.0,
                 rms_norm_eps=1e-2, vocab_size=300, builtin_vocab_size=300)


def _attention(**changes):
    from qwenlib.attention import Qwen3Attention

    torch.manual_seed(0)
    return Qwen3Attention(PretrainingConfig(**{**ATTENTION, **changes})).eval()


def test_an_attention_layer_built_alone_makes_its_rope_and_norms_from_the_config():
    """MinimalLLM hands every layer one shared Rotary; a layer built alone makes its own,
    with the config's theta and length, and its q/k norms take the config's eps."""
    attention = _attention()
    assert (attention.rotary.head_dim, attention.rotary.max_seq_len, attention.rotary.theta) == \
        (16, 32, 500.0)
    assert attention.q_norm.eps == attention.k_norm.eps == 1e-2
    x = torch.randn(2, 7, 64)
    y = attention(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 7, 64)   # no cache unless asked for
    other = _attention(rope_theta=10000.0)
    other.load_state_dict(attention.state_dict())
    assert not torch.allclose(other(x), y, atol=1e-4)              # theta reaches the rotation


@pytest.mark.parametrize("past, T", [(1, 3), (3, 2), (4, 1)])
def test_new_tokens_after_a_cache_see_the_past_and_each_other_causally(past, T):
    attention = _attention()
    x = torch.randn(2, past + T, 64)
    full = attention(x)
    cache = attention(x[:, :past], use_cache=True)[1]
    chunk = attention(x[:, past:], past_kv=cache)          # use_cache off: the cache still grows
    assert cache.length == past + T
    assert torch.allclose(chunk, full[:, past:], atol=1e-5)


def test_two_tokens_without_a_cache_are_causal():
    attention = _attention()
    x = torch.randn(1, 2, 64)
    changed = x.clone()
    changed[:, 1] += 1.0
    assert torch.allclose(attention(x)[:, 0], attention(changed)[:, 0], atol=1e-6)


def test_the_chunk_mask_is_made_on_the_inputs_device():
    """The meta device stands in for a GPU: a mask made on the CPU would not mix with it."""
    attention = _attention().to("meta")
    cache = attention(torch.empty(1, 3, 64, device="meta"), use_cache=True)[1]
    assert attention(torch.empty(1, 2, 64, device="meta"), past_kv=cache).device.type == "meta"


def test_a_kv_cache_filled_to_its_size_does_not_reallocate_and_grows_by_doubling():
    from qwenlib.attention import KVCache

    sized = KVCache(capacity=12)
    sized.append(torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4))
    first = sized.keys
    sized.append(torch.randn(1, 2, 7, 4), torch.randn(1, 2, 7, 4))   # exactly full: 12 of 12
    assert sized.keys is first
    growing, buffers = KVCache(), set()
    for _ in range(100):                                             # one token at a time
        growing.append(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))
        buffers.add(growing.keys.data_ptr())
    assert growing.capacity == 128 and len(buffers) <= 8               # 1, 2, 4, ..., 128
    branch = growing.copy()
    for _ in range(30):                                              # the copy grows on its own
        branch.append(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))
    assert (branch.length, branch.capacity, growing.length) == (130, 256, 100)


def _small(**changes):
    torch.manual_seed(0)
    return MinimalLLM(PretrainingConfig(**{**ATTENTION, "n_layers": 2, **changes})).eval()


def test_every_layer_shares_one_rope_table_and_every_norm_takes_the_configs_eps():
    model = _small()
    rotary = model.layers[0].self_attn.rotary
    assert all(layer.self_attn.rotary is rotary for layer in model.layers)   # one table, not one per layer
    assert (rotary.theta, rotary.max_seq_len) == (500.0, 32)
    assert {m.eps for m in model.modules() if isinstance(m, RMSNorm)} == {1e-2}
    assert model.is_tied_copy("lm_head.weight") and not model.is_tied_copy("embed_tokens.weight")
    assert not _small(tie_word_embeddings=False).is_tied_copy("lm_head.weight")


@pytest.mark.parametrize("ids, error, message", [
    (torch.ones(1, 4), TypeError, "input_ids must be an integer tensor of token ids, got "
     "torch.float32; pass e.g. torch.tensor(ids, dtype=torch.long)"),
    ([[1, 2]], TypeError, "input_ids must be an integer tensor of token ids, got <class 'list'>; "
     "pass e.g. torch.tensor(ids, dtype=torch.long)"),
    (torch.ones(1, 4, dtype=torch.bool), TypeError, "got torch.bool"),
    (torch.ones(1, 4, dtype=torch.complex64), TypeError, "got torch.complex64"),
    (torch.tensor([[0, 5, 300]]), ValueError, "token ids must lie in [0, vocab_size=300), got "
     "min 0, max 300; was the input made with another tokenizer?"),
    (torch.tensor([[-1, 5]]), ValueError, "got min -1, max 5"),
])
def test_ids_the_model_cannot_take_are_refused_in_one_line(ids, error, message):
    model = _small()
    with pytest.raises(error) as err:
        model(ids)
    assert message in str(err.value)
    assert model(torch.tensor([[0, 299]])).shape == (1, 2, 300)       # the edges are fine


def test_the_length_check_counts_the_cached_positions():
    model = _small()
    model.check_input(torch.zeros(1, 32, dtype=torch.long))          # exactly max_seq_len
    with pytest.raises(ValueError) as err:
        model.check_input(torch.zeros(1, 6, dtype=torch.long), past=27)
    assert str(err.value) == ("33 positions (27 cached + 6 new) exceed max_seq_len=32; "
                              "shorten the input to its last 5 tokens")
    bad = torch.tensor([[0, 300]])
    with pytest.raises(ValueError):
        model.check_input(bad)                                       # values are read by default
    model.check_input(bad, values=False)                             # unless told not to


def test_a_cache_passed_without_use_cache_still_gives_the_full_models_logits():
    model = _small()
    ids = torch.randint(0, 300, (2, 9))
    full = model(ids)
    _, cache = model(ids[:, :5], use_cache=True)
    assert torch.allclose(model(ids[:, 5:], past_key_values=cache), full[:, 5:], atol=1e-5)
    hidden, none = model.hidden_states(ids)
    assert none is None and hidden.shape == (2, 9, 64)


def test_model_loss_refuses_bad_targets_and_ids_in_one_line():
    model = _small()
    ids = torch.randint(0, 300, (2, 6))
    with pytest.raises(ValueError) as err:
        model.loss(ids, ids[:, :-1])
    assert str(err.value) == "targets must be a tensor shaped like input_ids (2, 6), got (2, 5)"
    with pytest.raises(ValueError, match=r"shaped like input_ids \(2, 6\), got <class 'list'>"):
        model.loss(ids, ids.tolist())
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 300\)"):
        model.loss(ids, ids.index_fill(1, torch.tensor([0]), 300))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, vocab_size=300\)"):
        model.loss(ids + 300, ids)
