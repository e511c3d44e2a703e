"""Precision decided from what the device really does (chapters 1, 6 and 7), and the fp16 +
GradScaler path of the trainer run for real on the CPU (CPU autocast supports fp16 and
torch.amp.GradScaler("cpu") exists), so that a T4's code path is tested without a T4."""

import pytest
import torch

from qwenlib import (ConfigError, MinimalLLM, PretrainingConfig, has_native_bf16,
                     load_and_cache_data, make_dataloaders, training_dtype)
from qwenlib.muon import default_ns_dtype
from qwenlib.training import PretrainingTrainer, load_checkpoint, mixed_precision

CUDA = torch.device("cuda")


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend a CUDA GPU of a given compute capability is present. PyTorch's own
    is_bf16_supported() says True everywhere, as it does on a real T4 (emulation)."""
    def install(major, minor):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    return install


@pytest.mark.parametrize("capability, gpu, dtype", [
    ((7, 0), "V100", torch.float16),
    ((7, 5), "T4", torch.float16),
    ((8, 0), "A100", torch.bfloat16),
    ((8, 6), "RTX 3090 / A10", torch.bfloat16),
    ((9, 0), "H100", torch.bfloat16),
])
def test_gpu_precision_follows_the_compute_capability_not_emulated_bf16(fake_gpu, capability, gpu, dtype):
    fake_gpu(*capability)
    assert has_native_bf16(CUDA) == (dtype == torch.bfloat16), gpu
    assert training_dtype(CUDA) == dtype, gpu
    autocast, scaler = mixed_precision(CUDA, use_amp=True)
    assert autocast.fast_dtype == dtype, gpu
    assert scaler.is_enabled() == (dtype == torch.float16), f"{gpu}: GradScaler only with fp16"
    # Newton-Schulz never runs in emulated bf16: bf16 only where it is native, else fp32
    assert default_ns_dtype(CUDA) == (torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)


@pytest.mark.parametrize("amp_dtype, dtype", [
    ("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)])
def test_amp_dtype_forces_the_choice_on_any_device(fake_gpu, amp_dtype, dtype):
    assert training_dtype("cpu", amp_dtype) == dtype
    fake_gpu(7, 5)
    assert training_dtype(CUDA, amp_dtype) == dtype


def test_the_cpu_trains_in_fp32_and_use_amp_false_turns_mixed_precision_off(fake_gpu):
    assert training_dtype("cpu") == torch.float32 and not has_native_bf16(torch.device("cpu"))
    autocast, scaler = mixed_precision(torch.device("cpu"), use_amp=True)
    assert not isinstance(autocast, torch.autocast) and not scaler.is_enabled()
    assert default_ns_dtype(torch.device("cpu")) == torch.float32
    fake_gpu(9, 0)
    autocast, scaler = mixed_precision(CUDA, use_amp=False)
    assert not isinstance(autocast, torch.autocast) and not scaler.is_enabled()


@pytest.mark.parametrize("fields, message", [
    (dict(amp_dtype="float16"), 'amp_dtype=\'float16\': must be "auto"'),
    (dict(amp_dtype="fp16", use_amp=False), "use_amp=False turns it off"),
    (dict(use_amp="false"), "use_amp='false': must be True or False"),
])
def test_bad_precision_settings_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        PretrainingConfig(**fields)


def test_amp_dtype_from_the_command_line_reaches_the_training_precision():
    from qwenlib.__main__ import build_parser, config_from_args
    from qwenlib.training import mixed_precision

    for flag, dtype, scaled in [("fp16", torch.float16, True), ("bf16", torch.bfloat16, False)]:
        config = config_from_args(build_parser().parse_args(["train", "--amp-dtype", flag]))
        autocast, scaler = mixed_precision(torch.device("cpu"), config.use_amp, config.amp_dtype)
        assert autocast.fast_dtype == dtype and scaler.is_enabled() == scaled
    config = config_from_args(build_parser().parse_args(["train"]))      # the default: fp32 on a CPU
    autocast, scaler = mixed_precision(torch.device("cpu"), config.use_amp, config.amp_dtype)
    assert not isinstance(autocast, torch.autocast) and not scaler.is_enabled()


# --- the fp16 + GradScaler path, for real, on the CPU ------------------------------------

TINY = dict(vocab_size=8192, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128, n_layers=2,
            max_seq_len=32, batch_size=4, gradient_accumulation_steps=2, max_steps=12,
            eval_every=4, eval_steps=2, max_tokens=6000, num_documents=30, dropout=0.1,
            amp_dtype="fp16")


@pytest.fixture(scope="module")
def tokens(shared_cache):
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    config = PretrainingConfig(cache_dir=str(shared_cache), **TINY)
    return load_and_cache_data(config, verbose=False)[2]


def fp16_run(tokens, folder, model=None, resume_from=None, stop_after=None, **overrides):
    config = PretrainingConfig(output_dir=str(folder), **{**TINY, **overrides})
    trainer = PretrainingTrainer(config, device="cpu", verbose=False)
    return trainer.train(*make_dataloaders(config, tokens), model=model,
                         resume_from=resume_from, stop_after=stop_after)


def test_fp16_with_grad_scaler_trains_muon_and_adamw_on_the_cpu(tokens, tmp_path):
    model, metrics = fp16_run(tokens, tmp_path / "run")
    _, reference = fp16_run(tokens, tmp_path / "fp32", amp_dtype="fp32")
    losses = metrics["history"]["train_loss"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses
    assert losses != reference["history"]["train_loss"]  # fp16 really ran: other roundings
    for fp16, fp32 in zip(metrics["history"]["val_loss"], reference["history"]["val_loss"]):
        assert abs(fp16 - fp32) < 1e-2, (fp16, fp32)  # and followed the fp32 run closely
    state = load_checkpoint(tmp_path / "run" / "final_model1.pt")
    assert state["scaler"]["scale"] > 0  # the scaler was on, and its state is saved
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    # both optimizers stepped: Muon's momentum and AdamW's moments exist
    muon, adamw = state["optimizers"]
    assert muon["state"] and adamw["state"]


class InfAtUpdate:
    """A gradient hook that turns one update's gradient into inf, as an fp16 overflow does."""

    def __init__(self, update: int, accumulation: int):
        self.calls, self.first, self.last = 0, (update - 1) * accumulation, update * accumulation

    def __call__(self, grad):
        self.calls += 1
        return grad * float("inf") if self.first < self.calls <= self.last else grad


def test_an_overflowing_update_is_skipped_and_leaves_the_weights_untouched(tokens, tmp_path):
    config = PretrainingConfig(**TINY)
    torch.manual_seed(0)
    model = MinimalLLM(config)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    before, _ = fp16_run(tokens, tmp_path / "two", model=model, max_steps=3, stop_after=2)
    model = MinimalLLM(config)
    model.load_state_dict(start)  # the same start, the same two updates, then an overflow
    model.layers[0].mlp.up_proj.weight.register_hook(InfAtUpdate(3, TINY["gradient_accumulation_steps"]))
    after, metrics = fp16_run(tokens, tmp_path / "three", model=model, max_steps=3)
    assert metrics["history"]["skipped_updates"] == [3] and metrics["skipped_updates"] == 1
    for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        assert torch.equal(a, b), f"{name} changed in the skipped update"
    scale_before = load_checkpoint(tmp_path / "two" / "latest.pt")["scaler"]["scale"]
    scale_after = load_checkpoint(tmp_path / "three" / "final_model1.pt")["scaler"]["scale"]
    assert scale_after == scale_before * 0.5  # the scaler backs off


def test_fp32_with_an_infinite_gradient_stops_with_a_clear_error(tokens, tmp_path):
    config = PretrainingConfig(**{**TINY, "amp_dtype": "fp32"})
    model = MinimalLLM(config)
    model.norm.weight.register_hook(InfAtUpdate(2, TINY["gradient_accumulation_steps"]))
    with pytest.raises(FloatingPointError, match="non-finite gradient norm .* at update 2"):
        fp16_run(tokens, tmp_path / "fp32", model=model, amp_dtype="fp32")


def test_fp16_resume_restores_the_scaler_and_continues_bit_exact(tokens, tmp_path):
    straight, m1 = fp16_run(tokens, tmp_path / "straight")
    fp16_run(tokens, tmp_path / "split", stop_after=5)
    saved = load_checkpoint(tmp_path / "split" / "latest.pt")["scaler"]
    resumed, m2 = fp16_run(tokens, tmp_path / "split",
                           resume_from=tmp_path / "split" / "latest.pt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after an fp16 resume"
    assert m1["history"]["train_loss"] == m2["history"]["train_loss"]
    final1 = load_checkpoint(tmp_path / "straight" / "final_model1.pt")["scaler"]
    final2 = load_checkpoint(tmp_path / "split" / "final_model1.pt")["scaler"]
    assert final1 == final2 and saved["_growth_tracker"] >= 0


def test_an_fp16_run_refuses_a_model_of_another_shape(tokens, tmp_path):
    other = MinimalLLM(PretrainingConfig(**{**TINY, "d_ff": 256}))
    with pytest.raises(ValueError, match="d_ff: model 256, config 128"):
        fp16_run(tokens, tmp_path / "other", model=other)
