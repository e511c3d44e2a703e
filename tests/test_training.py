"""Chapter 7: the trainer's steps, schedule, checkpoints and exact resume."""

import io
import math
import os
import pickle
import warnings

import pytest
import torch

from qwenlib import (MinimalLLM, PretrainingConfig, load_and_cache_data, make_dataloaders,
                     seed_everything)
from qwenlib.training import (CheckpointError, PretrainingTrainer, evaluate, load_checkpoint,
                              lr_scale, save_checkpoint)

TINY = dict(vocab_size=8192, max_seq_len=32, batch_size=4, gradient_accumulation_steps=2,
            max_steps=6, eval_every=2, eval_steps=2, max_tokens=4000, num_documents=20)


@pytest.fixture(scope="module")
def tokens(shared_cache):
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    config = PretrainingConfig(cache_dir=str(shared_cache), **TINY)
    return load_and_cache_data(config, verbose=False)[2]


def train(tokens, tmp_path, name, resume_from=None, stop_after=None, model=None, **overrides):
    config = PretrainingConfig(output_dir=str(tmp_path / name), **{**TINY, **overrides})
    train_loader, val_loader = make_dataloaders(config, tokens)
    trainer = PretrainingTrainer(config, device="cpu", verbose=False)
    return trainer.train(train_loader, val_loader, resume_from=resume_from, stop_after=stop_after,
                         model=model)


def fresh(model_class=MinimalLLM, **overrides):
    """A model built as the trainer builds its own (seeded by config.seed)."""
    config = PretrainingConfig(**{**TINY, **overrides})
    seed_everything(config.seed)
    return model_class(config)


class FaultyLoss(MinimalLLM):
    """A model whose `loss` misbehaves at one call: the trainer's faults, injected through
    train(model=...) instead of by patching qwenlib."""

    def __init__(self, config, at_call: int, fault):
        super().__init__(config)
        self.calls, self.at_call, self.fault = 0, at_call, fault

    def loss(self, *args, **kwargs):
        self.calls += 1
        loss = super().loss(*args, **kwargs)
        return self.fault(loss) if self.calls == self.at_call else loss


MUON_2025 = dict(muon_adjust_lr="match_rms_adamw", muon_ns_coefficients="polar_express",
                 normuon=True, cautious_weight_decay=True)  # NorMuon keeps a state of its own


@pytest.mark.parametrize("muon", [{}, MUON_2025], ids=["muon-2024", "muon-2025"])
def test_resume_continues_bit_exact(tokens, tmp_path, muon):
    straight, m1 = train(tokens, tmp_path, "straight", **muon)
    train(tokens, tmp_path, "split", stop_after=3, **muon)   # evals at 2 | 4, 6 cross the resume
    resumed, m2 = train(tokens, tmp_path, "split", resume_from=tmp_path / "split" / "latest.pt",
                        **muon)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    assert m1["history"]["train_loss"] == m2["history"]["train_loss"]
    assert m1["history"]["val_loss"] == m2["history"]["val_loss"]
    assert m1["history"]["eval_step"] == [2, 4, 6]
    assert m2["step"] == 6 and len(m2["history"]["train_loss"]) == 6


def test_max_steps_counts_optimizer_updates_not_micro_batches(tokens, tmp_path):
    _, metrics = train(tokens, tmp_path, "count", max_steps=5, gradient_accumulation_steps=3)
    assert metrics["step"] == 5 and len(metrics["history"]["train_loss"]) == 5
    state = load_checkpoint(tmp_path / "count" / "final_model1.pt")
    assert (state["data"]["epoch"], state["data"]["index"]) == (0, 15)  # 5 updates x 3 micro-batches
    assert state["step"] == 5


@pytest.mark.parametrize("step, expected", [
    (0, 1 / 50), (49, 1.0),                                    # warmup: 5% of 1000 = 50 updates
    (50, 1.0), (999, 0.1),                                     # cosine from 1 to the 10% floor
    (524, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 474 / 949))),
])
def test_lr_schedule_matches_hand_computed_values(step, expected):
    assert lr_scale(step, 1000, 0.05, 0.1) == pytest.approx(expected, rel=1e-12)


def test_lr_schedule_is_applied_to_both_optimizers(tokens, tmp_path):
    _, metrics = train(tokens, tmp_path, "lr", max_steps=4, warmup_ratio=0.5)
    config = PretrainingConfig(**TINY)
    assert metrics["history"]["lr"] == pytest.approx(
        [config.muon_lr * lr_scale(s, 4, 0.5, 0.1) for s in range(4)])
    state = load_checkpoint(tmp_path / "lr" / "final_model1.pt")
    adamw_lr = state["optimizers"][1]["param_groups"][0]["lr"]
    assert adamw_lr == pytest.approx(config.muon_lr * 0.1 * lr_scale(3, 4, 0.5, 0.1))


def test_adamw_only_trains_every_parameter_with_one_adamw_at_adamw_lr(tokens, tmp_path):
    model, metrics = train(tokens, tmp_path, "adamw", max_steps=4, warmup_ratio=0.5,
                           optimizer="adamw", adamw_lr=3e-3)
    assert metrics["history"]["lr"] == pytest.approx([3e-3 * lr_scale(s, 4, 0.5, 0.1) for s in range(4)])
    state = load_checkpoint(tmp_path / "adamw" / "final_model1.pt")
    (adamw,) = state["optimizers"]
    assert "exp_avg" in next(iter(adamw["state"].values()))  # an Adam state, not Muon's buffer
    stepped = sum(len(group["params"]) for group in adamw["param_groups"])
    assert stepped == len(list(model.parameters()))
    gains = adamw["param_groups"][1]
    assert gains["weight_decay"] == 0.0 and len(gains["params"]) == 1 + 4 * TINY.get("n_layers", 3)


def test_resuming_with_the_other_optimizer_is_a_clear_error(tokens, tmp_path):
    train(tokens, tmp_path, "muon", max_steps=2)
    with pytest.raises(CheckpointError, match="optimizer='muon'.*set optimizer='muon'.*to resume"):
        train(tokens, tmp_path, "other", optimizer="adamw",
              resume_from=tmp_path / "muon" / "final_model1.pt")
    # a Muon switch the saved optimizer state would silently override is refused the same way
    with pytest.raises(CheckpointError, match="normuon=False.*set normuon=False, from a shell "
                                              "--normuon False, to resume"):
        train(tokens, tmp_path, "other", normuon=True,
              resume_from=tmp_path / "muon" / "final_model1.pt")


def test_checkpoints_load_with_weights_only_and_hold_everything(tokens, tmp_path):
    train(tokens, tmp_path, "ckpt")
    folder = tmp_path / "ckpt"
    assert {p.name for p in folder.iterdir()} >= {"best_model1.pt", "final_model1.pt",
                                                  "config.json", "metrics.json"}
    import os
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "final_model1.pt").stat().st_mode & 0o777 == 0o666 & ~umask
    raw = torch.load(folder / "final_model1.pt", weights_only=True)
    assert raw["format"] == "qwenlib-checkpoint"
    assert set(raw) >= {"model", "optimizers", "scaler", "rng", "data", "step", "best_val_loss",
                        "config", "history"}
    assert PretrainingConfig.load_json(folder / "config.json").max_steps == TINY["max_steps"]


def test_pickle_bearing_file_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "qwenlib-checkpoint", "payload": io.StringIO("code")}, path)
    with pytest.raises(CheckpointError, match=r"evil.pt carries pickled Python code or objects \(_io.StringIO\)"):
        load_checkpoint(path)


class _RunsAShellCommand:
    def __reduce__(self):
        import os
        return (os.system, ("echo this ran",))


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b"not a checkpoint at all"), "not a readable checkpoint"),
    (lambda p: torch.save({"weight": torch.ones(2)}, p), "is not a qwenlib checkpoint"),
    (lambda p: None, "no such checkpoint file"),
    (lambda p: os.mkfifo(p), "is not a regular file"),  # opening it would block
    (lambda p: p.symlink_to(p.parent / "gone.pt"), "no such checkpoint file"),
    (lambda p: p.write_bytes(pickle.dumps({"a": _RunsAShellCommand()})),  # a plain pickle
     r"carries pickled Python code or objects \((posix|os)\.system\)"),
])
def test_unusable_files_name_the_file_and_the_problem(tmp_path, make, words):
    path = tmp_path / "model.pt"
    make(path)
    with warnings.catch_warnings(record=True) as printed:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match=words) as err:
            load_checkpoint(path)
    assert "model.pt" in str(err.value)
    assert not printed, [str(w.message)[:80] for w in printed]  # one error, no warning beside it


def test_truncated_checkpoint_is_refused(tokens, tmp_path):
    train(tokens, tmp_path, "trunc", max_steps=2)
    path = tmp_path / "trunc" / "final_model1.pt"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="final_model1.pt is not a readable checkpoint"):
        load_checkpoint(path)


def test_checkpoint_of_another_shape_names_the_mismatch(tokens, tmp_path):
    train(tokens, tmp_path, "shape", max_steps=2)
    with pytest.raises(CheckpointError, match="d_model: checkpoint 128, config 64"):
        train(tokens, tmp_path, "other", d_model=64, resume_from=tmp_path / "shape" / "final_model1.pt")


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "best_model1.pt"
    config = PretrainingConfig(**TINY).to_dict()
    import json
    save_checkpoint(path, {"config": json.dumps(config), "step": 1})
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"\x80\x02partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"config": json.dumps(config), "step": 2})
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def interrupt(loss):
    raise KeyboardInterrupt


def test_ctrl_c_saves_a_resumable_checkpoint(tokens, tmp_path):
    # the 5th micro-batch is the first of update 3: Ctrl-C before its optimizer step
    faulty = fresh(lambda c: FaultyLoss(c, at_call=5, fault=interrupt))
    _, metrics = train(tokens, tmp_path, "ctrlc", model=faulty)
    assert metrics["interrupted"] and metrics["step"] == 2
    resumed, m2 = train(tokens, tmp_path, "ctrlc", resume_from=tmp_path / "ctrlc" / "latest.pt",
                        model=fresh())
    straight, m1 = train(tokens, tmp_path, "straight", model=fresh())
    assert m1["history"]["train_loss"] == m2["history"]["train_loss"]
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(),
                                                  resumed.state_dict().values()))


@pytest.mark.parametrize("optimizer, flag", [("muon", "--muon-lr"), ("adamw", "--adamw-lr")])
def test_non_finite_loss_stops_with_the_update_number_and_the_right_advice(tokens, tmp_path,
                                                                          optimizer, flag):
    nan_on_fifth = fresh(lambda c: FaultyLoss(c, at_call=5, fault=lambda loss: loss * float("nan")),
                         optimizer=optimizer)
    with pytest.raises(FloatingPointError, match="non-finite loss .* at update 3") as error:
        train(tokens, tmp_path, "nan", eval_every=100, model=nan_on_fifth, optimizer=optimizer)
    assert flag in str(error.value) and "No checkpoint was saved yet" in str(error.value)
    assert not (tmp_path / "nan" / "latest.pt").exists()


def test_non_finite_loss_names_the_checkpoint_that_exists(tokens, tmp_path):
    nan_on_fifth = fresh(lambda c: FaultyLoss(c, at_call=5, fault=lambda loss: loss * float("nan")))
    with pytest.raises(FloatingPointError) as error:
        train(tokens, tmp_path, "nan", eval_every=1, model=nan_on_fifth)
    best = tmp_path / "nan" / "best_model1.pt"
    assert f"The last checkpoint, {best}, is kept" in str(error.value)
    assert load_checkpoint(best)["step"] == 2


class CountingModel(MinimalLLM):
    def __init__(self, config):
        super().__init__(config)
        self.calls = {"loss": 0, "train_forward": 0}

    def loss(self, *args, **kwargs):
        self.calls["loss"] += 1
        return super().loss(*args, **kwargs)

    def forward(self, *args, **kwargs):
        self.calls["train_forward"] += self.training  # evaluation may build logits; training may not
        return super().forward(*args, **kwargs)


def test_trainer_trains_with_the_fused_loss_not_full_logits(tokens, tmp_path):
    model = fresh(CountingModel)
    train(tokens, tmp_path, "fused", max_steps=3, eval_every=100, model=model)
    assert model.calls == {"loss": 3 * TINY["gradient_accumulation_steps"], "train_forward": 0}


def test_a_model_of_another_shape_is_refused_by_train(tokens, tmp_path):
    with pytest.raises(ValueError, match="d_model: model 64, config 128"):
        train(tokens, tmp_path, "shape", model=fresh(d_model=64))


def test_evaluation_weighs_every_token_alike_when_the_last_batch_is_short(tokens):
    config = PretrainingConfig(**TINY)
    torch.manual_seed(0)
    model = MinimalLLM(config).eval()
    dataset = make_dataloaders(config, tokens)[1].dataset
    batch_size = next(b for b in (3, 4, 5, 7) if len(dataset) % b)      # a short last batch
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    result = evaluate(model, loader)
    total, count, batch_means = 0.0, 0, []
    with torch.no_grad():
        for x, y in loader:
            losses = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(),
                                                       reduction="none")
            total, count = total + losses.sum().item(), count + losses.numel()
            batch_means.append(losses.mean().item())
    assert result["val_loss"] == pytest.approx(total / count, rel=1e-6)
    assert result["val_perplexity"] == pytest.approx(math.exp(total / count), rel=1e-6)
    # the data can tell the two apart: a mean of batch means is another number here
    assert sum(batch_means) / len(batch_means) != pytest.approx(total / count, rel=1e-6)


def test_metrics_json_is_strict_json_even_before_any_evaluation(tokens, tmp_path):
    import json
    train(tokens, tmp_path, "early", stop_after=1)  # eval_every=2: no evaluation yet
    text = (tmp_path / "early" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda name: pytest.fail(f"metrics.json has {name}"))
    assert metrics["best_val_loss"] is None and metrics["step"] == 1


def test_evaluation_in_chunks_equals_full_logits_cross_entropy(tokens):
    import torch.nn.functional as F
    config = PretrainingConfig(**TINY)
    _, val_loader = make_dataloaders(config, tokens)
    torch.manual_seed(0)
    model = MinimalLLM(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    model.train()
    result = evaluate(model, val_loader)
    assert model.training  # evaluate() puts back the mode it found
    loss_sum, correct, count = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for x, y in val_loader:
            logits = model(x)
            loss_sum += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            count += y.numel()
    assert result["val_loss"] == pytest.approx(loss_sum / count, rel=1e-6)
    assert result["val_accuracy"] == correct / count


@pytest.mark.parametrize("bad", ["input", "target"])
def test_an_id_outside_the_vocabulary_in_a_batch_is_one_clear_error(tokens, tmp_path, bad):
    """The trainer checks each batch's ids where they enter (the model's own loss then skips
    reading them again): an id past vocab_size, in the inputs or in the targets, is a
    ValueError naming the range, not an index error deep in the embedding or the loss."""
    config = PretrainingConfig(output_dir=str(tmp_path / bad), **TINY)
    train_loader, val_loader = make_dataloaders(config, tokens)
    x, y = next(iter(train_loader))
    (x if bad == "input" else y)[1, 5] = config.vocab_size
    trainer = PretrainingTrainer(config, device="cpu", verbose=False)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, vocab_size=8192\).*max 8192"):
        trainer.train([(x, y)] * 8, val_loader)


def test_lr_scale_defaults_and_its_ends():
    assert lr_scale(0, 100) == pytest.approx(1 / 5)                # warm-up: 5% of 100 updates
    assert lr_scale(99, 100) == pytest.approx(0.1)                 # the cosine ends at 10%
    assert lr_scale(1, 2, warmup_ratio=0.0) == pytest.approx(0.1)  # two updates: peak, floor
    assert lr_scale(150, 100) == pytest.approx(0.1)                # past the end: the floor


def test_validation_metrics_from_sums_at_their_edges():
    from qwenlib.training import metrics_from_sums

    with pytest.raises(ValueError) as err:
        metrics_from_sums(torch.tensor([0.0, 0.0, 0.0]))
    assert str(err.value) == "the validation loader gave no batches; check val_fraction and max_tokens"
    assert metrics_from_sums(torch.tensor([1.0, 1.0, 1.0]))["val_perplexity"] == pytest.approx(math.e)
    for loss in (709.0, 709.5, 800.0):                             # exp(709.78...) overflows
        assert metrics_from_sums(torch.tensor([loss, 0.0, 1.0]))["val_perplexity"] == math.inf


def test_the_batch_stream_counts_epochs_and_replays_a_saved_position():
    from torch.utils.data import DataLoader

    from qwenlib.training import BatchStream

    loader = lambda: DataLoader(list(range(6)), batch_size=2, shuffle=True,  # noqa: E731
                                generator=torch.Generator().manual_seed(0))
    stream = BatchStream(loader())
    seen = [next(stream).tolist() for _ in range(7)]               # 3 batches an epoch
    assert (stream.epoch, stream.index) == (2, 1)
    assert sorted(sum(seen[:3], [])) == sorted(sum(seen[3:6], [])) == list(range(6))
    saved = BatchStream(loader())
    for _ in range(4):
        next(saved)
    state = saved.state_dict()
    assert (state["epoch"], state["index"]) == (1, 1)
    again = BatchStream(loader())
    assert again.load_state_dict(state) is True
    assert (again.epoch, again.index) == (1, 1)
    assert [next(again).tolist() for _ in range(3)] == seen[4:7]
    unseeded = BatchStream(DataLoader(list(range(6)), batch_size=2, shuffle=True))
    assert unseeded.load_state_dict(state) is False                # no generator: not exact


def test_a_one_update_run_is_evaluated_after_its_update(tokens, tmp_path):
    _, metrics = train(tokens, tmp_path, "one", max_steps=1, eval_every=1)
    assert metrics["history"]["eval_step"] == [1]
