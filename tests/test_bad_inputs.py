"""Bad or unlucky inputs, as a new user makes them: each gets one clear line (from the shell:
`error: ...`, naming the flag or the file, no traceback), a non-zero exit code, and no file
that was there before is removed or changed.

The command line runs in this process (`qwenlib.__main__.main`, the code `python -m qwenlib`
runs), so that faults such as a full disk can be injected; two cases run it as a real
subprocess to check the exit code and `--debug` from outside.
"""

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from qwenlib import MinimalLLM, PretrainingConfig, load_and_cache_data
from qwenlib import __main__ as cli
from qwenlib import cache as data_cache
from qwenlib import data
from qwenlib.training import metrics_from_sums, save_checkpoint

TINY_FLAGS = ["--max-tokens", "3000", "--max-seq-len", "32", "--vocab-size", "8192",
              "--batch-size", "2", "--max-steps", "4", "--eval-every", "2", "--eval-steps", "1",
              "--d-model", "64", "--d-ff", "128", "--n-layers", "1"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("QWENLIB_DEBUG", raising=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder with a trained tiny run: models/ (checkpoints, tokenizer/) and cache/."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    root = tmp_path_factory.mktemp("run")
    code = cli.main(["train", *TINY_FLAGS, "--cache-dir", str(root / "cache"),
                     "--output-dir", str(root / "models")])
    assert code == 0
    return root


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder`, with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def kept(before: dict[str, str], folder: Path) -> bool:
    """Whether every file of `before` is still there, unchanged (new files may be added)."""
    return before.items() <= snapshot(folder).items()


def one_error_line(capsys, argv, code_wanted=None) -> str:
    """Run the command line; assert it failed with exactly one `error:` line and no
    traceback; return that line."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors end the process, as from a shell
        code = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("training")]
    assert code != 0, err
    if code_wanted is not None:
        assert code == code_wanted, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def tiny_checkpoint(path: Path, **changes) -> Path:
    """A checkpoint as the trainer writes it, with entries replaced (None: removed)."""
    config = PretrainingConfig(vocab_size=8192, max_seq_len=32, d_model=64, d_ff=128, n_layers=1)
    state = {"config": config.to_dict(), "model": MinimalLLM(config).state_dict(), "step": 0}
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    return save_checkpoint(path, state)


def other_shape_weights():
    other = PretrainingConfig(vocab_size=8192, max_seq_len=32, d_model=32, d_ff=64, n_layers=1)
    return MinimalLLM(other).state_dict()


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this ran",))


BROKEN_CHECKPOINTS = {
    "config that is not JSON": (dict(config="{not json"), "its config is not valid JSON"),
    "unknown config field": (dict(config={"d_model": 64, "bogus": 1}),
                             r"its config is not usable: unknown PretrainingConfig field\(s\) \['bogus'\]"),
    "config of the wrong type": (dict(config=[1, 2]), "its config is a list, not a dict"),
    "no config": (dict(config=None), "has no 'config' entry"),
    "no model": (dict(model=None), "has no 'model' entry, needed to build the model"),
    "weights of another shape": (dict(model=other_shape_weights()),
                                 "its weights do not fit the model its config describes"),
}


@pytest.mark.parametrize("command", ["generate", "export"])
@pytest.mark.parametrize("case", list(BROKEN_CHECKPOINTS))
def test_a_broken_checkpoint_is_one_line_naming_the_file(trained, tmp_path, capsys, command, case):
    changes, words = BROKEN_CHECKPOINTS[case]
    path = tiny_checkpoint(tmp_path / "broken" / "model.pt", **changes)
    before = snapshot(trained)
    extra = ["--prompt", "The "] if command == "generate" else ["--output-dir", str(tmp_path / "hf")]
    line = one_error_line(capsys, [command, "--checkpoint", str(path), *extra], 2)
    assert str(path) in line and re.search(words, line), line
    assert snapshot(trained) == before and not (tmp_path / "hf").exists()


def test_a_checkpoint_carrying_code_is_called_that_and_never_loaded_unsafely(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "qwenlib-checkpoint", "config": {}, "model": Evil()}, path)
    line = one_error_line(capsys, ["generate", "--checkpoint", str(path), "--prompt", "x"], 2)
    assert "carries pickled Python code or objects (posix.system" in line or "(os.system" in line
    assert "weights_only=False" not in line and "weights_only" not in line


def test_flipped_bytes_and_a_truncated_file_are_named(trained, tmp_path, capsys):
    good = trained / "models" / "final_model1.pt"
    flipped = tmp_path / "flipped.pt"
    raw = bytearray(good.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 4] = bytes(b ^ 0xFF for b in raw[middle:middle + 4])
    flipped.write_bytes(bytes(raw))
    line = one_error_line(capsys, ["generate", "--checkpoint", str(flipped), "--prompt", "x"], 2)
    assert f"{flipped} is corrupted" in line or f"{flipped} is not a readable checkpoint" in line
    short = tmp_path / "short.pt"
    short.write_bytes(good.read_bytes()[:1000])
    line = one_error_line(capsys, ["generate", "--checkpoint", str(short), "--prompt", "x"], 2)
    assert f"{short} is not a readable checkpoint" in line
    line = one_error_line(capsys, ["generate", "--checkpoint", str(tmp_path), "--prompt", "x"], 2)
    assert "is a folder, not a checkpoint file" in line


@pytest.mark.parametrize("flags, words", [
    (["--muon-lr", "inf"], "--muon-lr inf: must be a finite number"),
    (["--adamw-lr", "nan"], "--adamw-lr nan: must be a finite number"),
    (["--weight-decay", "nan"], "--weight-decay nan: must be a finite number"),
    (["--rope-theta", "inf"], "--rope-theta inf: must be a finite number"),
    (["--rms-norm-eps", "inf"], "--rms-norm-eps inf: must be a finite number"),
    (["--seed", str(10**23)], r"--seed 100000000000000000000000: must lie in 0 \.\. 2\*\*32 - 1"),
    (["--use-amp", "maybe"], "argument --use-amp: expected true or false"),
    (["--max-steps", "abc"], "argument --max-steps: invalid int value"),
    (["--amp-dtype", "fp8"], "--amp-dtype fp8: must be"),
    (["--batch-size", "5000"], "--batch-size 5000: .* training windows cannot fill one batch"),
    (["--vocab-size", "300"], "--vocab-size 300: the token ids go up to 8,1.."),
])
def test_bad_training_settings_are_one_line_naming_the_flag(trained, capsys, flags, words):
    before = snapshot(trained)
    line = one_error_line(capsys, ["train", *TINY_FLAGS, *flags, "--cache-dir",
                                   str(trained / "cache"), "--output-dir", str(trained / "other")], 2)
    assert re.search(words, line), line
    assert kept(before, trained) and not (trained / "other").exists()


@pytest.mark.parametrize("flags, words", [
    (["--temperature", "inf"], "--temperature inf: must be a finite number >= 0"),
    (["--temperature", "-1"], "--temperature -1.0: must be a finite number >= 0"),
    (["--top-k", "-1"], "--top-k -1: must be a whole number >= 0"),
    (["--top-p", "2"], r"--top-p 2.0: must lie in \(0, 1\]"),
    (["--max-length", str(10**12)], "--max-length 1000000000000: must be a whole number of new tokens from 1 to 100,000"),
    (["--seed", str(10**23)], "--seed 100000000000000000000000: must be a whole number from 0 to 2\\*\\*64 - 1"),
    (["--device", "tpu"], "device 'tpu' is not one qwenlib can use"),
    (["--device", "cuda:abc"], "device 'cuda:abc' is not one qwenlib can use"),
    (["--prompt", ""], "the prompt is empty"),
])
def test_bad_generation_settings_are_one_line_naming_the_flag(trained, capsys, flags, words):
    checkpoint = str(trained / "models" / "final_model1.pt")
    line = one_error_line(capsys, ["generate", "--checkpoint", checkpoint, "--prompt", "The ",
                                   *flags], 2)
    assert re.search(words, line), line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_names_the_flag_to_use(trained, capsys):
    checkpoint = str(trained / "models" / "final_model1.pt")
    line = one_error_line(capsys, ["generate", "--checkpoint", checkpoint, "--prompt", "The ",
                                   "--device", "cuda"], 2)
    assert "has no CUDA GPU" in line and "--device cpu" in line and "prefer=" not in line


def test_generate_without_the_checkpoints_tokenizer_refuses_instead_of_substituting(
        trained, tmp_path, capsys):
    lone = tmp_path / "lone.pt"
    lone.write_bytes((trained / "models" / "final_model1.pt").read_bytes())
    line = one_error_line(capsys, ["generate", "--checkpoint", str(lone), "--prompt", "The "], 1)
    assert f"{tmp_path / 'tokenizer'} is missing" in line and "--tokenizer DIR" in line
    code = cli.main(["generate", "--checkpoint", str(lone), "--prompt", "The ", "--max-length",
                     "4", "--tokenizer", str(trained / "models" / "tokenizer")])
    assert code == 0 and capsys.readouterr().out.startswith("The ")


def test_ctrl_c_during_generate_keeps_what_was_printed(trained, capsys, monkeypatch):
    from qwenlib import generation

    def two_pieces_then_ctrl_c(*args, **kwargs):
        yield "one"
        yield " two"
        raise KeyboardInterrupt

    monkeypatch.setattr(generation, "stream_text", two_pieces_then_ctrl_c)
    code = cli.main(["generate", "--checkpoint", str(trained / "models" / "final_model1.pt"),
                     "--prompt", "The "])
    out, err = capsys.readouterr()
    assert code == 130 and out == "The one two\n" and "Traceback" not in err


def test_export_into_someone_elses_model_folder_is_refused_and_nothing_deleted(trained, tmp_path,
                                                                              capsys):
    theirs = tmp_path / "their-model"
    theirs.mkdir()
    (theirs / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (theirs / "NOTES.md").write_text("my notes")
    (theirs / "model-00001-of-00002.safetensors").write_bytes(b"shard")
    before = snapshot(theirs)
    line = one_error_line(capsys, ["export", "--checkpoint", str(trained / "models" / "final_model1.pt"),
                                   "--output-dir", str(theirs)])
    assert "NOTES.md" in line and "model-00001-of-00002.safetensors" in line
    assert snapshot(theirs) == before


def test_re_export_replaces_only_its_own_files_and_refuses_a_folder_with_the_users(trained,
                                                                                   tmp_path, capsys):
    checkpoint = str(trained / "models" / "final_model1.pt")
    folder = tmp_path / "hf"
    assert cli.main(["export", "--checkpoint", checkpoint, "--output-dir", str(folder)]) == 0
    marker = json.loads((folder / "qwenlib_export.json").read_text())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(marker["files"])
    assert cli.main(["export", "--checkpoint", checkpoint, "--output-dir", str(folder)]) == 0
    (folder / "README.md").write_text("my model card")
    (folder / "eval_results").mkdir()
    (folder / "eval_results" / "scores.json").write_text("{}")
    before = snapshot(folder)
    capsys.readouterr()
    line = one_error_line(capsys, ["export", "--checkpoint", checkpoint, "--output-dir", str(folder)])
    assert "README.md" in line and "eval_results/scores.json" in line
    assert snapshot(folder) == before


def test_export_onto_a_file_is_one_line(trained, capsys):
    target = trained / "models" / "metrics.json"
    before = snapshot(trained)
    line = one_error_line(capsys, ["export", "--checkpoint", str(trained / "models" / "final_model1.pt"),
                                   "--output-dir", str(target)])
    assert f"{target} is a file, not a folder" in line
    assert snapshot(trained) == before


@pytest.mark.parametrize("errno_, strerror, where", [
    (28, "No space left on device", "torch.save"),
    (13, "Permission denied", "tempfile.mkstemp"),
])
def test_a_full_disk_or_read_only_folder_is_one_line_and_keeps_the_last_checkpoint(
        trained, tmp_path, capsys, monkeypatch, errno_, strerror, where):
    import shutil
    import tempfile

    out = tmp_path / "models"
    shutil.copytree(trained / "models", out)
    before = snapshot(out)
    module, name = where.split(".")
    real = getattr({"torch": torch, "tempfile": tempfile}[module], name)

    def fails(*args, **kwargs):
        raise OSError(errno_, strerror, str(out))

    monkeypatch.setattr({"torch": torch, "tempfile": tempfile}[module], name, fails)
    line = one_error_line(capsys, ["train", *TINY_FLAGS, "--max-steps", "6", "--cache-dir",
                                   str(trained / "cache"), "--output-dir", str(out), "--resume",
                                   str(out / "final_model1.pt")], 1)
    monkeypatch.setattr({"torch": torch, "tempfile": tempfile}[module], name, real)
    assert line == f"error: {out}: {strerror}"
    kept = {k: v for k, v in snapshot(out).items() if k.endswith(".pt")}
    assert kept == {k: v for k, v in before.items() if k.endswith(".pt")}


def test_a_validation_loss_above_709_is_an_infinite_perplexity_in_strict_json(tmp_path):
    metrics = metrics_from_sums(torch.tensor([800.0 * 10, 0.0, 10.0], dtype=torch.float64))
    assert metrics["val_loss"] == 800.0 and metrics["val_perplexity"] == float("inf")
    from qwenlib.training import _json_ready
    text = json.dumps(_json_ready({"history": {"val_perplexity": [float("inf"), 3.0]}}),
                      allow_nan=False)
    assert json.loads(text) == {"history": {"val_perplexity": [None, 3.0]}}


def test_debug_shows_the_traceback_and_the_exit_code_comes_from_outside(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
        filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))}
    args = [sys.executable, "-m", "qwenlib", "generate", "--checkpoint", str(tmp_path / "none.pt"),
            "--prompt", "x"]
    plain = subprocess.run(args, capture_output=True, text=True, env=env)
    assert plain.returncode == 2 and plain.stderr == f"error: {tmp_path / 'none.pt'}: no such checkpoint file\n"
    debug = subprocess.run(args + ["--debug"], capture_output=True, text=True, env=env)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "CheckpointError" in debug.stderr


# --- the data cache -------------------------------------------------------------------------
CACHE = dict(max_tokens=3000, max_seq_len=32, vocab_size=8192)


def damage(folder: Path, how: str) -> None:
    tokens = np.load(folder / "tokens.npy")
    meta = folder / "meta.json"
    if how == "float ids":
        np.save(folder / "tokens.npy", tokens.astype(np.float32))
    elif how == "negative ids":
        np.save(folder / "tokens.npy", np.where(np.arange(len(tokens)) == 7, -5, tokens))
    elif how == "ids past the tokenizer":
        np.save(folder / "tokens.npy", np.where(np.arange(len(tokens)) == 7, 10**6, tokens))
    elif how == "2-D ids":
        np.save(folder / "tokens.npy", tokens.reshape(2, -1))
    elif how == "all zeros":
        np.save(folder / "tokens.npy", np.zeros_like(tokens))
    elif how == "meta is a list":
        meta.write_text("[1, 2]")
    elif how == "meta is null":
        meta.write_text("null")
    elif how == "old cache, all zeros":  # a cache from before checksums: the encoding check
        values = json.loads(meta.read_text())
        values.pop("tokens_sha256")
        meta.write_text(json.dumps(values))
        np.save(folder / "tokens.npy", np.zeros_like(tokens))


@pytest.mark.parametrize("how", ["float ids", "negative ids", "ids past the tokenizer", "2-D ids",
                                 "all zeros", "meta is a list", "meta is null",
                                 "old cache, all zeros"])
def test_a_damaged_cache_is_rebuilt_saying_so(tmp_path, capsys, how):
    config = PretrainingConfig(cache_dir=str(tmp_path), **CACHE)
    _, _, good = load_and_cache_data(config, verbose=False)
    damage(data.cache_path(config, "builtin"), how)
    _, _, again = load_and_cache_data(config, verbose=False)
    assert "is unusable" in capsys.readouterr().out
    assert again.dtype == np.int64 and np.array_equal(good, again)
    _, _, third = load_and_cache_data(config, verbose=False)  # the rebuilt cache is trusted
    assert "is unusable" not in capsys.readouterr().out and np.array_equal(good, third)


def test_a_cache_build_that_loses_a_race_uses_the_winners_cache(tmp_path, monkeypatch):
    config = PretrainingConfig(cache_dir=str(tmp_path / "ours"), **CACHE)
    winner = PretrainingConfig(cache_dir=str(tmp_path / "winner"), **CACHE)
    load_and_cache_data(winner, verbose=False)
    path = data.cache_path(config, "builtin")
    real_replace = os.replace

    def another_process_finishes_first(src, dst):
        if Path(dst) == path and not path.exists():
            import shutil
            shutil.copytree(data.cache_path(winner, "builtin"), path)  # the winner's rename
        return real_replace(src, dst)

    monkeypatch.setattr(data_cache.os, "replace", another_process_finishes_first)
    texts, tokenizer, tokens = load_and_cache_data(config, verbose=False)
    monkeypatch.setattr(data_cache.os, "replace", real_replace)
    assert np.array_equal(tokens, load_and_cache_data(winner, verbose=False)[2])
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary folder left


# --- the original package's snippet ---------------------------------------------------------
def test_the_original_packages_inference_snippet_runs_verbatim(trained, monkeypatch):
    monkeypatch.chdir(trained)
    # verbatim, as the seed's README has it (weights_only is torch.load's default)
    checkpoint = torch.load("models/final_model1.pt")
    config = checkpoint['config']
    model = MinimalLLM(config)
    model.load_state_dict(checkpoint['model_state_dict'])
    # ... and it is the trained model, stored once: without the second name the file is
    # no smaller
    assert checkpoint["model_state_dict"] is checkpoint["model"]
    assert torch.equal(model.embed_tokens.weight, checkpoint["model"]["embed_tokens.weight"])
    single = io.BytesIO()
    torch.save({k: v for k, v in checkpoint.items() if k != "model_state_dict"}, single)
    size = (trained / "models" / "final_model1.pt").stat().st_size
    assert abs(size - len(single.getvalue())) < 4096, (size, len(single.getvalue()))


def test_a_read_only_cache_folder_is_one_line(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(cache))

    monkeypatch.setattr(data_cache.tempfile, "mkdtemp", refused)
    line = one_error_line(capsys, ["data", "--max-tokens", "3000", "--max-seq-len", "32",
                                   "--cache-dir", str(cache)], 1)
    assert line == f"error: {cache}: Permission denied"
