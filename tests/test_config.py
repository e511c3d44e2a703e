import dataclasses
import json

import pytest

from qwenlib import ConfigError, PretrainingConfig


def test_defaults_are_the_original_packages():
    c = PretrainingConfig()
    original = dict(d_model=128, n_heads=4, n_layers=3, d_ff=512, batch_size=8, max_steps=1000,
                    gradient_accumulation_steps=2, n_kv_heads=2, max_seq_len=256,
                    num_documents=200, max_tokens=50000, muon_lr=0.01, use_amp=True,
                    dropout=0.1, eval_every=100, eval_steps=20, weight_decay=0.1, grad_clip=1.0,
                    rms_norm_eps=1e-6, vocab_size=49152, rope_theta=10000.0, output_dir="models")
    assert {k: getattr(c, k) for k in original} == original
    assert c.head_dim == 32


def test_the_default_settings_reach_the_model_and_its_optimizers():
    """Each default above is wired to what it sets: a field the model or the optimizer set-up
    ignored would still pass the test above."""
    import torch

    from qwenlib import MinimalLLM, setup_optimizers

    c = PretrainingConfig()
    model = MinimalLLM(c)
    layer = model.layers[0]
    assert len(model.layers) == 3 and model.embed_tokens.weight.shape == (49152, 128)
    assert layer.self_attn.q_proj.out_features == 4 * 32 and layer.self_attn.k_proj.out_features == 2 * 32
    assert layer.mlp.gate_proj.out_features == 512 and layer.dropout.p == 0.1
    assert {m.eps for m in model.modules() if type(m).__name__ == "RMSNorm"} == {1e-6}
    assert (layer.self_attn.rotary.theta, layer.self_attn.rotary.max_seq_len) == (10000.0, 256)
    muon, adamw = setup_optimizers(model, c)
    assert type(muon).__name__ == "Muon" and muon.param_groups[0]["lr"] == 0.01
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["lr"] == 0.001
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.1, 0.0]
    # the 2024 Muon: no decay on its matrices, Keller Jordan's scale and quintic, no extras
    group = muon.param_groups[0]
    assert (group["weight_decay"], group["adjust_lr_fn"], group["ns_coefficients"]) == \
        (0.0, "original", (3.4445, -4.7750, 2.0315))
    assert not group["normuon"] and not group["cautious_weight_decay"]


@pytest.mark.parametrize("bad, field, words", [
    (dict(d_model=130), "d_model", "divisible by n_heads"),
    (dict(n_kv_heads=3), "n_heads", "multiple of n_kv_heads"),
    (dict(d_model=12, n_heads=4, n_kv_heads=1), "d_model", "odd head_dim"),
    (dict(dropout=1.0), "dropout", "0 <= dropout < 1"),
    (dict(dropout=-0.1), "dropout", "0 <= dropout < 1"),
    (dict(n_layers=0), "n_layers", "positive"),
    (dict(num_documents=0), "num_documents", "positive"),
    (dict(max_tokens=100), "max_tokens", "smaller than one training window"),
    (dict(val_fraction=1.0), "val_fraction", "0 < val_fraction < 1"),
    (dict(data_source="web"), "data_source", '"auto", "hub" or "builtin"'),
    (dict(dataset_name="/data/corpus"), "dataset_name", "set data_source='hub' to use it"),
    (dict(tokenizer_name="gpt2", data_source="builtin"), "tokenizer_name", "ignores it"),
    (dict(optimizer="sgd"), "optimizer", '"muon"'),
    (dict(adamw_lr=0.0), "adamw_lr", "positive"),
    (dict(builtin_vocab_size=256), "builtin_vocab_size", "at least 257"),
    (dict(batch_size=2.5), "batch_size", "integer"),
    (dict(n_heads=True), "n_heads", "integer"),
    (dict(muon_weight_decay=-0.1), "muon_weight_decay", ">= 0"),
    (dict(muon_adjust_lr="moonlight"), "muon_adjust_lr", '"match_rms_adamw"'),
    (dict(muon_ns_coefficients="polar"), "muon_ns_coefficients", '"polar_express"'),
    (dict(optimizer="adamw", normuon=True), "normuon", 'set optimizer="muon" to use it'),
    (dict(optimizer="adamw", muon_weight_decay=0.1), "muon_weight_decay", "read only by Muon"),
    (dict(muon_adjust_lr="match_rms_adamw", muon_lr=0.02), "muon_lr", "Muon takes adamw_lr"),
    (dict(muon_adjust_lr="match_rms_adamw", muon_weight_decay=0.1), "muon_weight_decay",
     "Muon takes weight_decay"),
])
def test_invalid_config_names_the_field_and_the_rule(bad, field, words):
    with pytest.raises(ConfigError) as err:
        PretrainingConfig(**bad)
    assert f"PretrainingConfig.{field}=" in str(err.value)
    assert words in str(err.value)


def test_replace_revalidates():
    with pytest.raises(ConfigError, match="n_heads"):
        dataclasses.replace(PretrainingConfig(), n_heads=3)


def test_json_round_trip_and_unknown_fields(tmp_path):
    c = PretrainingConfig(d_model=64, n_heads=2, n_kv_heads=1, data_source="hub", dataset_config=None)
    c.save_json(tmp_path / "config.json")
    assert PretrainingConfig.load_json(tmp_path / "config.json") == c
    values = json.loads((tmp_path / "config.json").read_text())
    values["d_modle"] = 64
    with pytest.raises(ConfigError, match=r"unknown PretrainingConfig field\(s\) \['d_modle'\]"):
        PretrainingConfig.from_dict(values)
