"""Chapter 7's checkpoints under bad luck: a corrupted file, a resume on other data or past
max_steps, temporary files of killed saves, and the seed's loader without a generator."""

import pytest
import torch
from torch.utils.data import DataLoader

from qwenlib import (MinimalLLM, PretrainingConfig, TextTokenDataset, load_and_cache_data,
                     make_dataloaders, seed_everything)
from qwenlib.data import split_tokens
from qwenlib.training import CheckpointError, PretrainingTrainer, load_checkpoint

TINY = dict(vocab_size=8192, max_seq_len=32, batch_size=4, gradient_accumulation_steps=2,
            max_steps=6, eval_every=3, eval_steps=2, max_tokens=4000, num_documents=20,
            d_model=64, d_ff=128, n_layers=2)


@pytest.fixture(scope="module")
def data(shared_cache):
    """(texts, tokenizer, tokens) of the built-in corpus at TINY's settings."""
    import os
    os.environ["HF_HUB_OFFLINE"] = "1"
    config = PretrainingConfig(cache_dir=str(shared_cache), **TINY)
    return load_and_cache_data(config, verbose=False)


@pytest.fixture(scope="module")
def tokens(data):
    return data[2]


def run(tokens, folder, loaders=None, verbose=False, **overrides):
    train_args = {k: overrides.pop(k) for k in ("resume_from", "stop_after", "allow_data_change",
                                                "model", "tokenizer") if k in overrides}
    config = PretrainingConfig(output_dir=str(folder), **{**TINY, **overrides})
    trainer = PretrainingTrainer(config, device="cpu", verbose=verbose)
    return trainer.train(*(loaders or make_dataloaders(config, tokens)), **train_args)


def test_a_checkpoint_with_flipped_bytes_in_a_tensor_is_refused(tokens, tmp_path):
    run(tokens, tmp_path, max_steps=2)
    path = tmp_path / "final_model1.pt"
    weights = load_checkpoint(path)["model"]["embed_tokens.weight"]
    raw = bytearray(path.read_bytes())
    at = raw.find(weights[100:104].numpy().tobytes())  # 4 floats in the middle of the embedding
    assert at > 0
    raw[at:at + 4] = bytes(b ^ 0xFF for b in raw[at:at + 4])
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=f"{path} is corrupted"):
        load_checkpoint(path)


def test_resume_on_other_data_is_refused_naming_the_fields_unless_allowed(tokens, tmp_path, capsys):
    run(tokens, tmp_path, stop_after=2)
    latest = tmp_path / "latest.pt"
    with pytest.raises(CheckpointError, match="num_documents: checkpoint 20, now 30"):
        run(tokens, tmp_path, resume_from=latest, num_documents=30)
    _, metrics = run(tokens, tmp_path, resume_from=latest, num_documents=30,
                     allow_data_change=True, verbose=True)
    assert metrics["step"] == 6
    assert "warning: continuing on other data" in capsys.readouterr().out


def test_resume_with_max_steps_below_the_saved_update_says_what_to_do(tokens, tmp_path):
    run(tokens, tmp_path, stop_after=4)
    with pytest.raises(CheckpointError, match=r"at update 4, past max_steps=3.*set max_steps=5 or more"):
        run(tokens, tmp_path, resume_from=tmp_path / "latest.pt", max_steps=3)


def test_temporary_files_of_killed_saves_are_removed_and_nothing_else(tokens, tmp_path):
    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / ".latest.pt.k2x9_q0a.tmp", tmp_path / ".best_model1.pt.abcdefgh.tmp"]
    kept = [tmp_path / ".latest.pt.short.tmp", tmp_path / ".notes.md.abcdefgh.tmp",
            tmp_path / "my.pt.abcdefgh.tmp", tmp_path / "NOTES.md"]
    for p in stale + kept:
        p.write_bytes(b"x")
    run(tokens, tmp_path, max_steps=1)
    assert not any(p.exists() for p in stale)
    assert all(p.read_bytes() == b"x" for p in kept)


def test_a_loader_without_its_own_generator_resumes_with_a_warning(tokens, tmp_path, capsys):
    config = PretrainingConfig(**TINY)
    train_tokens, val_tokens = split_tokens(tokens, config.val_fraction, config.max_seq_len)
    # the original package's own example: shuffle=True, no generator
    loaders = (DataLoader(TextTokenDataset(train_tokens, config.max_seq_len),
                          batch_size=config.batch_size, shuffle=True),
               DataLoader(TextTokenDataset(val_tokens, config.max_seq_len),
                          batch_size=config.batch_size))
    run(tokens, tmp_path, loaders, stop_after=2)
    _, metrics = run(tokens, tmp_path, loaders, resume_from=tmp_path / "latest.pt", verbose=True)
    assert metrics["step"] == 6
    out = capsys.readouterr().out
    assert "its order differs from an uninterrupted run's" in out
    assert "qwenlib.make_dataloaders" in out


def test_the_saved_checksum_covers_what_was_saved(tokens, tmp_path):
    _, metrics = run(tokens, tmp_path, max_steps=2)
    raw = torch.load(tmp_path / "final_model1.pt", weights_only=True)
    assert len(raw["checksum"]) == 64
    state = load_checkpoint(tmp_path / "final_model1.pt")  # verifies, and succeeds
    assert state["step"] == 2 and state["history"]["train_loss"] == metrics["history"]["train_loss"]


@pytest.mark.parametrize("stop", [5, 9, 12])
def test_resume_across_an_epoch_boundary_is_bit_exact(tokens, tmp_path, stop):
    # evaluation only at the end: a stop on an evaluation update is the case below
    fields = dict(max_steps=14, dropout=0.1, batch_size=8, val_fraction=0.3, eval_every=14)
    config = PretrainingConfig(**{**TINY, **fields})
    few = tokens[:300]  # a short stream: an epoch is a handful of updates

    def loaders():
        return make_dataloaders(config, few)  # a fresh seeded generator each time

    per_epoch = len(loaders()[0]) // config.gradient_accumulation_steps
    assert per_epoch < 14, per_epoch  # the run crosses at least one epoch end
    straight, m1 = run(tokens, tmp_path / "straight", loaders(), **fields)
    run(tokens, tmp_path / "split", loaders(), stop_after=stop, **fields)
    saved = load_checkpoint(tmp_path / "split" / "latest.pt")["data"]
    resumed, m2 = run(tokens, tmp_path / "split", loaders(),
                      resume_from=tmp_path / "split" / "latest.pt", **fields)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs (stopped at update {stop}, epoch {saved['epoch']})"
    assert m1["history"]["train_loss"] == m2["history"]["train_loss"]


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_stop_on_an_evaluation_update_resumes_bit_exact(tokens, tmp_path):
    straight, m1 = run(tokens, tmp_path / "straight", dropout=0.1)      # evaluations at 3 and 6
    run(tokens, tmp_path / "split", dropout=0.1, stop_after=3)
    resumed, m2 = run(tokens, tmp_path / "split", dropout=0.1,
                      resume_from=tmp_path / "split" / "latest.pt")
    assert same_weights(straight, resumed)
    assert m1["history"]["val_loss"] == m2["history"]["val_loss"]


def test_resuming_from_the_best_checkpoint_with_dropout_is_bit_exact(tokens, tmp_path):
    straight, m1 = run(tokens, tmp_path / "straight", dropout=0.1)
    run(tokens, tmp_path / "split", dropout=0.1, stop_after=4)  # best_model1.pt at update 3
    best = tmp_path / "split" / "best_model1.pt"
    assert load_checkpoint(best)["step"] == 3
    resumed, m2 = run(tokens, tmp_path / "split", dropout=0.1, resume_from=best)
    assert same_weights(straight, resumed)
    assert m1["history"]["train_loss"] == m2["history"]["train_loss"]


class InterruptedEvaluation(MinimalLLM):
    """A model whose first evaluation is cut short by Ctrl-C (a second Ctrl-C, or one
    outside the main thread, raises KeyboardInterrupt at once)."""

    interrupted = False

    def hidden_states(self, *args, **kwargs):
        if not self.training and not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return super().hidden_states(*args, **kwargs)


def test_a_checkpoint_saved_during_an_evaluation_evaluates_again_on_resume(tokens, tmp_path):
    def fresh(model_class):
        config = PretrainingConfig(**TINY)
        seed_everything(config.seed)
        return model_class(config)

    straight, m1 = run(tokens, tmp_path / "straight", model=fresh(MinimalLLM))
    _, cut = run(tokens, tmp_path / "split", model=fresh(InterruptedEvaluation))
    assert cut["interrupted"] and cut["step"] == 3 and cut["history"]["eval_step"] == []
    resumed, m2 = run(tokens, tmp_path / "split", resume_from=tmp_path / "split" / "latest.pt",
                      model=fresh(MinimalLLM))
    assert m2["history"]["eval_step"] == [3, 6]
    assert m1["history"]["val_loss"] == m2["history"]["val_loss"]
    assert same_weights(straight, resumed)


def test_the_training_state_round_trips_through_a_checkpoint(tokens, tmp_path):
    from qwenlib.training import TrainingState

    _, metrics = run(tokens, tmp_path, stop_after=4)
    state = TrainingState()
    state.load_state_dict(load_checkpoint(tmp_path / "latest.pt"))
    assert state.step == 4 and state.history == metrics["history"]
    assert state.best_val_loss == metrics["best_val_loss"] and state.evaluated() is False
    again = TrainingState()
    again.load_state_dict(state.state_dict())
    assert again.state_dict().keys() == {"step", "best_val_loss", "history", "data", "rng"}
    assert torch.equal(again.rng["torch"], state.rng["torch"]) and again.data == state.data


def _resave(path, change) -> None:
    """Rewrite a checkpoint after `change(state)`, with a checksum that matches again: the
    file is then intact as a file, and only its contents are wrong."""
    from qwenlib.training import checksum
    raw = torch.load(path, weights_only=True)
    state = {k: v for k, v in raw.items() if k not in ("format", "checksum", "model_state_dict")}
    change(state)
    torch.save({"format": raw["format"], **state, "model_state_dict": state["model"],
                "checksum": checksum(state)}, path)


@pytest.mark.parametrize("change, says", [
    (lambda s: s["model"].pop("norm.weight"), "its weights do not fit the model"),
    (lambda s: s["model"].__setitem__("extra.weight", torch.ones(2)), "its weights do not fit the model"),
    (lambda s: s["model"]["layers.0.mlp.up_proj.weight"].view(-1)[3].fill_(float("nan")),
     r"holds NaN or infinite weights \(layers.0.mlp.up_proj.weight first\)"),
])
def test_a_checkpoint_with_wrong_weights_and_a_valid_checksum_is_refused_on_resume_and_use(
        tokens, tmp_path, change, says):
    from qwenlib.training import load_model
    run(tokens, tmp_path, max_steps=2)
    path = tmp_path / "final_model1.pt"
    _resave(path, change)
    load_checkpoint(path)  # the file itself is intact: its checksum matches
    with pytest.raises(CheckpointError, match=f"final_model1.pt.*{says}|final_model1.pt: {says}"):
        run(tokens, tmp_path, max_steps=3, resume_from=path)
    with pytest.raises(CheckpointError, match=says):
        load_model(path)  # what generate and export use


def test_resume_with_another_batch_size_is_refused_naming_the_flag(tokens, tmp_path):
    # the saved position counts batches: the 4th batch of 2 windows is not the 4th of 4
    run(tokens, tmp_path, stop_after=2)
    with pytest.raises(CheckpointError, match=r"batch_size: checkpoint 4, now 2.*keep batch_size "
                                              r"and change gradient_accumulation_steps"):
        run(tokens, tmp_path, resume_from=tmp_path / "latest.pt", batch_size=2,
            gradient_accumulation_steps=4)


def test_a_data_position_past_the_epoch_end_goes_on_into_the_next_epoch():
    # allowed with allow_data_change: batches of another size can leave the saved position
    # past the end of the new epoch (it raised StopIteration)
    from qwenlib.training import BatchStream
    windows = torch.arange(10)
    saved = BatchStream(DataLoader(windows, batch_size=2, shuffle=True,
                                   generator=torch.Generator().manual_seed(0), drop_last=True))
    for _ in range(4):
        next(saved)
    larger = BatchStream(DataLoader(windows, batch_size=5, shuffle=True,
                                    generator=torch.Generator().manual_seed(0), drop_last=True))
    larger.load_state_dict(saved.state_dict())
    assert (larger.epoch, larger.index) == (1, 2)  # 4 batches of 5: two epochs of 10 windows
    assert len(next(larger)) == 5 and larger.epoch == 2


def test_the_tokenizer_fingerprint_is_saved_and_another_tokenizer_is_refused_on_resume(
        data, tokens, tmp_path):
    from qwenlib.cache import tokenizer_fingerprint
    from qwenlib.data import train_bpe_tokenizer
    texts, tokenizer, _ = data
    run(tokens, tmp_path, stop_after=2, tokenizer=tokenizer)
    latest = tmp_path / "latest.pt"
    assert load_checkpoint(latest)["tokenizer_sha256"] == tokenizer_fingerprint(tokenizer)
    other = train_bpe_tokenizer(texts, 300)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)
    with pytest.raises(CheckpointError, match="the tokenizer: another vocabulary"):
        run(tokens, tmp_path, resume_from=latest, tokenizer=other)
    run(tokens, tmp_path, resume_from=latest)  # none given: the saved one goes on
    assert load_checkpoint(tmp_path / "final_model1.pt")["tokenizer_sha256"] == \
        tokenizer_fingerprint(tokenizer)


# another run holding the folder, as output_folder_lock does (flock on .train.lock, its pid
# written inside), without importing qwenlib: a bare process starts in milliseconds
_HOLD = """
import fcntl, os, socket, sys, time
handle = open(os.path.join(sys.argv[1], ".train.lock"), "a+")
fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
handle.write(f"pid {os.getpid()} on {socket.gethostname()}\\n")
handle.flush()
print("holding", flush=True)
time.sleep(600)
"""


def test_a_second_run_on_a_folder_in_use_is_refused_and_deletes_nothing(tokens, tmp_path):
    import signal
    import subprocess
    import sys
    first = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert first.stdout.readline() == b"holding\n"
        in_flight = tmp_path / ".latest.pt.abcdefgh.tmp"  # the first run's save, half written
        in_flight.write_bytes(b"x")
        with pytest.raises(RuntimeError, match=rf"{tmp_path} is in use by another training run "
                                               rf"\(pid {first.pid} on .*--output-dir"):
            run(tokens, tmp_path, max_steps=1)
        assert in_flight.read_bytes() == b"x" and not (tmp_path / "final_model1.pt").exists()
    finally:
        first.send_signal(signal.SIGKILL)  # however the first run ends, the lock goes with it
        first.wait()
    run(tokens, tmp_path, max_steps=1)
    assert (tmp_path / "final_model1.pt").exists() and not in_flight.exists()
