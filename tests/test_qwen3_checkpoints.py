"""Published Qwen3 shapes through the course's code (chapters 3-5, 8): head_dim other than
d_model / n_heads, an untied output layer, rope_theta 1e6, from_pretrained of a
save_pretrained folder, and EOS-aware generation. Every norm gain is randomised (a gain
of 1 would hide a missing or misplaced norm), and so are the weights."""

import pytest
import torch

from qwenlib import (MinimalLLM, PretrainingConfig, PretrainingTrainer, from_hf,
                     from_pretrained, generate_text, load_and_cache_data, make_dataloaders,
                     save_hf, to_hf)
from qwenlib.generation import generate_ids
from qwenlib.training import load_checkpoint

transformers = pytest.importorskip("transformers")

# Qwen3-0.6B's widths (config.json of the release), with 2 of its 28 layers
QWEN3_0_6B = dict(vocab_size=151936, d_model=1024, n_heads=16, n_kv_heads=8, head_dim=128,
                  d_ff=3072, n_layers=2, max_seq_len=40960, rope_theta=1e6, rms_norm_eps=1e-6,
                  tie_word_embeddings=True, max_tokens=40961)
# small, untied, and head_dim (24) unrelated to d_model / n_heads (64 / 4 = 16)
SMALL_UNTIED = dict(vocab_size=8192, d_model=64, n_heads=4, n_kv_heads=2, head_dim=24, d_ff=96,
                    n_layers=2, max_seq_len=64, rope_theta=1e6, tie_word_embeddings=False)
SHAPES = {"Qwen3-0.6B widths": QWEN3_0_6B, "untied, head_dim 24": SMALL_UNTIED}


def randomised(config: PretrainingConfig, seed: int = 0) -> MinimalLLM:
    torch.manual_seed(seed)
    model = MinimalLLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # every RMSNorm gain: input, post-attention, q_norm, k_norm, final
                p.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module", params=list(SHAPES), ids=list(SHAPES))
def pair(request):
    config = PretrainingConfig(**SHAPES[request.param])
    model = randomised(config)
    return request.param, config, model, to_hf(model).eval()


def test_logits_equal_transformers_qwen3(pair):
    name, config, model, hf = pair
    torch.manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (2, 24))
    with torch.no_grad():
        gap = (model(ids) - hf(ids).logits).abs().max().item()
    print(f"{name}: max |logit difference| {gap:.2e}")
    assert gap <= 1e-4
    assert hf.config.head_dim == config.head_dim
    assert hf.config.tie_word_embeddings == config.tie_word_embeddings
    if not config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() != model.embed_tokens.weight.data_ptr()


def test_greedy_tokens_equal_transformers_generate(pair):
    _, config, model, hf = pair
    prompt = torch.tensor([[11, 2024, 7, 513, 99]])
    ours = torch.stack(list(generate_ids(model, prompt, 12, temperature=0)), dim=1)
    with torch.no_grad():
        theirs = hf.generate(prompt, do_sample=False, max_new_tokens=12, min_new_tokens=12,
                             pad_token_id=0)[:, prompt.shape[1]:]
    assert torch.equal(ours, theirs)


def test_from_hf_and_back_round_trips_every_weight(pair):
    _, config, model, hf = pair
    back, back_config = from_hf(hf)
    for field in ("head_dim", "tie_word_embeddings", "rope_theta", "n_kv_heads", "vocab_size"):
        assert getattr(back_config, field) == getattr(config, field), field
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    assert (back.lm_head.weight is back.embed_tokens.weight) == config.tie_word_embeddings


def test_rope_tables_are_shared_and_grow_with_the_positions_used():
    config = PretrainingConfig(**QWEN3_0_6B)
    model = randomised(config)
    rotaries = {id(layer.self_attn.rotary) for layer in model.layers}
    assert len(rotaries) == 1, "one RoPE table for every layer"
    with torch.no_grad():
        model(torch.randint(0, config.vocab_size, (1, 300)))
    rotary = model.layers[0].self_attn.rotary
    assert rotary._cos.shape == (512, 128)  # 300 positions used -> 512 rows, not 40,960


def test_a_save_pretrained_folder_loads_through_from_pretrained(tmp_path, offline):
    config = PretrainingConfig(**SMALL_UNTIED, cache_dir=str(tmp_path / "cache"),
                               max_tokens=3000)
    _, tokenizer, _ = load_and_cache_data(config, verbose=False)
    model = randomised(config)
    hf = to_hf(model).to(torch.bfloat16)
    hf.save_pretrained(tmp_path / "qwen3")
    tokenizer.save_pretrained(tmp_path / "qwen3")
    loaded, loaded_tokenizer, loaded_config = from_pretrained(tmp_path / "qwen3")
    assert loaded_config.head_dim == 24 and not loaded_config.tie_word_embeddings
    assert loaded.embed_tokens.weight.dtype == torch.bfloat16  # the checkpoint's own dtype
    ours = loaded.state_dict()
    for name, a in hf.state_dict().items():
        assert torch.equal(a, ours[name.removeprefix("model.")]), name
    ids = torch.randint(0, config.vocab_size, (1, 16))
    with torch.no_grad():
        assert (loaded(ids).float() - hf.eval()(ids).logits.float()).abs().max() <= 1e-2
    assert loaded_tokenizer("The end")["input_ids"] == tokenizer("The end")["input_ids"]
    fp32, _, _ = from_pretrained(tmp_path / "qwen3", dtype=torch.float32)
    assert fp32.lm_head.weight.dtype == torch.float32


def test_a_hub_id_offline_is_one_clear_error(offline):
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE=1 keeps the Hugging Face Hub off"):
        from_pretrained("Qwen/Qwen3-0.6B")


def test_a_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        from_pretrained(tmp_path)


def test_from_hf_refuses_mixture_of_experts():
    config = transformers.Qwen3MoeConfig(vocab_size=300, hidden_size=32, intermediate_size=64,
                                         moe_intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                         num_experts=4, num_experts_per_tok=2)
    hf = transformers.Qwen3MoeForCausalLM(config)
    with pytest.raises(ValueError, match="model_type='qwen3_moe'"):
        from_hf(hf)


def test_an_untied_head_dim_model_trains_saves_resumes_bit_exact_and_exports(tmp_path, offline):
    fields = dict(SMALL_UNTIED, max_tokens=4000, num_documents=20, batch_size=4, max_steps=6,
                  eval_every=3, eval_steps=2, dropout=0.1, cache_dir=str(tmp_path / "cache"))
    _, tokenizer, tokens = load_and_cache_data(PretrainingConfig(**fields), verbose=False)

    def run(name, **kwargs):
        config = PretrainingConfig(**fields, output_dir=str(tmp_path / name))
        return PretrainingTrainer(config, device="cpu", verbose=False).train(
            *make_dataloaders(config, tokens), **kwargs)

    straight, m1 = run("straight")
    run("split", stop_after=4)
    resumed, m2 = run("split", resume_from=tmp_path / "split" / "latest.pt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    assert m1["history"]["train_loss"] == m2["history"]["train_loss"]
    saved = load_checkpoint(tmp_path / "split" / "final_model1.pt")
    assert saved["config"].head_dim == 24 and not saved["config"].tie_word_embeddings
    assert not torch.equal(saved["model"]["lm_head.weight"], saved["model"]["embed_tokens.weight"])
    folder = save_hf(resumed, tokenizer, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, 8192, (1, 20))
    with torch.no_grad():
        assert (resumed.eval()(ids) - hf(ids).logits).abs().max() <= 1e-4
    assert isinstance(generate_text(resumed, tokenizer, "The ", max_length=5, temperature=0), str)


def test_head_dim_and_untied_output_are_command_line_flags():
    from qwenlib.__main__ import build_parser, config_from_args
    args = build_parser().parse_args(["train", "--head-dim", "24", "--tie-word-embeddings", "false"])
    config = config_from_args(args)
    assert config.head_dim == 24 and config.tie_word_embeddings is False
    default = config_from_args(build_parser().parse_args(["train", "--head-dim", "none"]))
    assert default.head_dim == default.d_model // default.n_heads


# The published dense Qwen3 configs (config.json as released, written by transformers 4.51):
# (hidden_size, intermediate_size, layers, query heads, tied)
PUBLISHED = {
    "Qwen3-0.6B": (1024, 3072, 28, 16, True),
    "Qwen3-1.7B": (2048, 6144, 28, 16, True),
    "Qwen3-4B": (2560, 9728, 36, 32, True),
    "Qwen3-8B": (4096, 12288, 36, 32, False),
    "Qwen3-14B": (5120, 17408, 40, 40, False),
    "Qwen3-32B": (5120, 25600, 64, 64, False),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_every_published_dense_qwen3_config_is_accepted(name):
    from qwenlib.hf import config_from_hf, to_hf_config
    hidden, inter, layers, heads, tied = PUBLISHED[name]
    released = {"architectures": ["Qwen3ForCausalLM"], "attention_bias": False,
                "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
                "head_dim": 128, "hidden_act": "silu", "hidden_size": hidden,
                "initializer_range": 0.02, "intermediate_size": inter,
                "max_position_embeddings": 40960, "max_window_layers": layers,
                "model_type": "qwen3", "num_attention_heads": heads, "num_hidden_layers": layers,
                "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None,
                "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": tied,
                "torch_dtype": "bfloat16", "use_cache": True, "use_sliding_window": False,
                "vocab_size": 151936}
    config = config_from_hf(transformers.Qwen3Config.from_dict(released))
    assert (config.d_model, config.d_ff, config.n_layers, config.n_heads, config.n_kv_heads,
            config.head_dim, config.rope_theta, config.tie_word_embeddings, config.max_seq_len) \
        == (hidden, inter, layers, heads, 8, 128, 1e6, tied, 40960)
    with torch.device("meta"):  # the real shapes, no memory
        model = MinimalLLM(config)
    assert model.layers[0].self_attn.q_proj.weight.shape == (heads * 128, hidden)
    assert (model.lm_head.weight is model.embed_tokens.weight) == tied
    again = config_from_hf(to_hf_config(config))
    assert again == config


def test_one_field_table_maps_every_architecture_field_both_ways():
    """HF_CONFIG_FIELDS is the only place that names transformers' fields: a field added to
    the architecture without a place there (or mapped to the wrong name) fails here."""
    from qwenlib.config import ARCHITECTURE_FIELDS
    from qwenlib.hf import HF_CONFIG_FIELDS, config_from_hf, to_hf_config
    assert set(HF_CONFIG_FIELDS) | {"rope_theta"} == set(ARCHITECTURE_FIELDS)
    # every field off its default, so that a swapped or dropped field shows
    config = PretrainingConfig(vocab_size=1000, d_model=48, d_ff=80, n_layers=3, n_heads=6,
                               n_kv_heads=3, head_dim=12, max_seq_len=96, rms_norm_eps=3e-5,
                               rope_theta=12345.0, tie_word_embeddings=False)
    hf = to_hf_config(config)
    for ours, theirs in HF_CONFIG_FIELDS.items():
        assert getattr(hf, theirs) == getattr(config, ours), (ours, theirs)
    back = config_from_hf(hf)
    assert {f: getattr(back, f) for f in ARCHITECTURE_FIELDS} == \
        {f: getattr(config, f) for f in ARCHITECTURE_FIELDS}
