"""`python -m qwenlib` from a shell.

The commands run in this process, through `qwenlib.__main__.main` (the function
`python -m qwenlib` calls), with their output captured: a subprocess per command cost
about 6 s of interpreter and import start-up each. `tests/test_bad_inputs.py` runs the
real `python -m qwenlib` in subprocesses for the exit codes seen from outside, and the
export test below loads the exported folder in a separate interpreter in which importing
qwenlib fails.
"""

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from qwenlib import __main__ as cli


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("QWENLIB_DEBUG", raising=False)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str, cwd: Path) -> Result:
    """`python -m qwenlib *args` in folder `cwd`, in this process."""
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exit_:          # argparse's own errors exit
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(here)
    return Result(code, out.getvalue(), err.getvalue())


def tiny_run(tmp_path: Path, updates: int) -> list[str]:
    """`train` flags for a run of a few seconds, evaluated once at its last update, with the
    data cache and the checkpoints under tmp_path."""
    return ["--max-tokens", "3000", "--max-seq-len", "32", "--vocab-size", "8192",
            "--batch-size", "2", "--max-steps", str(updates), "--eval-every", str(updates),
            "--eval-steps", "1", "--cache-dir", str(tmp_path / "cache"),
            "--output-dir", str(tmp_path / "models")]


def test_data_command_prepares_the_cache_with_flags_from_the_config(tmp_path):
    result = run("data", "--max-tokens", "3000", "--max-seq-len", "64",
                 "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3,000 tokens" in result.stdout and "built-in corpus" in result.stdout
    assert any((tmp_path / "cache").iterdir())


def test_invalid_flag_values_name_the_field(tmp_path):
    result = run("data", "--d-model", "130", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("error: --d-model 130: must be divisible by n_heads=4 (each head "
                             "gets d_model / n_heads channels); try d_model=128, or set head_dim\n")


def test_train_command_trains_saves_and_resumes(tmp_path):
    flags = ["--max-tokens", "3000", "--max-seq-len", "32", "--vocab-size", "8192",
             "--batch-size", "2", "--max-steps", "4", "--eval-every", "2", "--eval-steps", "1",
             "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "models")]
    result = run("train", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "4 updates" in result.stdout and "sample (greedy):" in result.stdout
    assert (tmp_path / "models" / "final_model1.pt").exists()
    assert (tmp_path / "models" / "metrics.json").exists()
    more = run("train", *flags[:-6], "--max-steps", "6", "--cache-dir", str(tmp_path / "cache"),
               "--output-dir", str(tmp_path / "models"),
               "--resume", str(tmp_path / "models" / "final_model1.pt"), cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "resumed from" in more.stdout and "6 updates" in more.stdout
    checkpoint = str(tmp_path / "models" / "final_model1.pt")
    gen = run("generate", "--checkpoint", checkpoint, "--prompt", "The ", "--max-length", "8",
              "--temperature", "0", cwd=tmp_path)
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.startswith("The ") and len(gen.stdout) > len("The \n")
    bad = run("generate", "--checkpoint", checkpoint, "--prompt", "The ", "--top-p", "1.5",
              cwd=tmp_path)
    assert bad.returncode == 2 and "error: --top-p 1.5: must lie in (0, 1]" in bad.stderr
    # a prompt of bytes that were not UTF-8 (Python hands them over as lone surrogates)
    bad = run("generate", "--checkpoint", checkpoint, "--prompt", "caf\udce9", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "the --prompt bytes were not UTF-8" in bad.stderr
    (tmp_path / "not_a_tokenizer").mkdir()
    (tmp_path / "not_a_tokenizer" / "tokenizer.json").write_text('{"a": 1}')
    bad = run("generate", "--checkpoint", checkpoint, "--prompt", "The ", "--tokenizer",
              str(tmp_path / "not_a_tokenizer"), cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert "holds no tokenizer that transformers can load" in bad.stderr
    os.mkfifo(tmp_path / "not_a_tokenizer" / "vocab.json")  # transformers would block on it
    bad = run("generate", "--checkpoint", checkpoint, "--prompt", "The ", "--tokenizer",
              str(tmp_path / "not_a_tokenizer"), cwd=tmp_path)
    assert bad.returncode == 2 and "vocab.json is not a regular file" in bad.stderr
    # another valid tokenizer where the run's was: refused by the checkpoint's fingerprint
    from qwenlib.cache import save_tokenizer
    from qwenlib.data import train_bpe_tokenizer
    (tmp_path / "models" / "tokenizer").rename(tmp_path / "the_runs_tokenizer")
    save_tokenizer(train_bpe_tokenizer(["the cat sat on the mat"] * 20, 300),
                   tmp_path / "models" / "tokenizer")
    for command in (["generate", "--prompt", "The "], ["export", "--output-dir", "hf"]):
        bad = run(*command, "--checkpoint", checkpoint, cwd=tmp_path)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert "holds another tokenizer than the one" in bad.stderr and "--tokenizer DIR" in bad.stderr
    good = run("generate", "--checkpoint", checkpoint, "--prompt", "The ", "--max-length", "8",
               "--temperature", "0", "--tokenizer", str(tmp_path / "the_runs_tokenizer"), cwd=tmp_path)
    assert good.returncode == 0 and good.stdout == gen.stdout, good.stderr


def test_a_model_too_large_for_memory_is_one_line_naming_the_flags(tmp_path):
    result = run("train", *tiny_run(tmp_path, updates=1)[:-4], "--vocab-size", str(10**12),
                 "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "m"),
                 cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: out of memory on the CPU (")
    assert "lower --vocab-size" in result.stderr


def test_resume_from_a_bad_file_is_a_clear_error(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"junk")
    result = run("train", "--max-tokens", "3000", "--max-seq-len", "32",
                 "--cache-dir", str(tmp_path / "cache"), "--resume", str(tmp_path / "x.pt"),
                 cwd=tmp_path)
    assert result.returncode == 2
    assert "x.pt is not a readable checkpoint" in result.stderr


HF_ONLY = """
import sys
sys.modules["qwenlib"] = None   # any import of qwenlib now fails: transformers alone
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(folder).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
ids = tokenizer("The ", return_tensors="pt", add_special_tokens=False).input_ids
with torch.no_grad():
    out = model.generate(ids, do_sample=False, max_new_tokens=12)
print(repr(tokenizer.decode(out[0], skip_special_tokens=True)))
"""


def test_exported_folder_generates_the_same_in_transformers_alone(tmp_path):
    flags = tiny_run(tmp_path, updates=3)
    assert run("train", *flags, cwd=tmp_path).returncode == 0
    checkpoint, folder = tmp_path / "models" / "final_model1.pt", tmp_path / "hf"
    exported = run("export", "--checkpoint", str(checkpoint), "--output-dir", str(folder), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    theirs = subprocess.run([sys.executable, "-c", HF_ONLY, str(folder)], capture_output=True,
                            text=True, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert theirs.returncode == 0, theirs.stderr
    ours = run("generate", "--checkpoint", str(checkpoint), "--prompt", "The ", "--max-length",
               "12", "--temperature", "0", cwd=tmp_path)
    assert theirs.stdout.strip() == repr(ours.stdout[:-1])  # generate prints a final newline
    again = run("export", "--checkpoint", str(checkpoint), "--output-dir", str(folder), cwd=tmp_path)
    assert again.returncode == 0, again.stderr                # an earlier export is replaced
    refused = run("export", "--checkpoint", str(checkpoint), "--output-dir",
                  str(tmp_path / "models"), cwd=tmp_path)    # not an export: left alone
    assert refused.returncode != 0 and "holds files that an export of qwenlib did not write" in refused.stderr
    assert checkpoint.exists()


def test_resume_past_max_steps_or_on_other_data_is_one_clear_line(tmp_path):
    flags = tiny_run(tmp_path, updates=3)
    assert run("train", *flags, cwd=tmp_path).returncode == 0
    final = str(tmp_path / "models" / "final_model1.pt")
    past = run("train", *flags, "--max-steps", "2", "--resume", final, cwd=tmp_path)
    assert past.returncode == 2
    assert past.stderr.strip().count("\n") == 0 and "past max_steps=2" in past.stderr
    assert "set max_steps=4 or more" in past.stderr
    other = run("train", *flags, "--max-steps", "4", "--num-documents", "50", "--resume", final,
                cwd=tmp_path)
    assert other.returncode == 2 and "--allow-data-change" in other.stderr
    allowed = run("train", *flags, "--max-steps", "4", "--num-documents", "50", "--resume", final,
                  "--allow-data-change", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr


def test_export_format_gguf_writes_one_file_and_bad_flag_mixes_are_one_line(tmp_path):
    flags = tiny_run(tmp_path, updates=2)
    assert run("train", *flags, cwd=tmp_path).returncode == 0
    checkpoint = str(tmp_path / "models" / "final_model1.pt")
    done = run("export", "--checkpoint", checkpoint, "--format", "gguf", "--gguf-dtype", "f16",
               "--output", str(tmp_path / "m.gguf"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "llama-cli -m" in done.stdout and (tmp_path / "m.gguf").read_bytes()[:4] == b"GGUF"
    for wrong, code, says in [
            (["--format", "gguf", "--output-dir", str(tmp_path / "x")], 2,
             "error: --format gguf writes one file: give --output FILE.gguf"),
            (["--output", str(tmp_path / "x.gguf")], 2,
             "error: --output and --gguf-dtype are for --format gguf"),
            ([], 2, "error: --format hf writes a folder: give --output-dir DIR"),
            (["--format", "gguf", "--output", checkpoint], 1,  # a file it did not write
             "is not a GGUF file; save_gguf replaces only an earlier GGUF file")]:
        bad = run("export", "--checkpoint", checkpoint, *wrong, cwd=tmp_path)
        assert bad.returncode == code and says in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    assert not (tmp_path / "x").exists() and (tmp_path / "models" / "final_model1.pt").exists()


def test_dataset_config_none_from_the_shell_is_none_not_the_string():
    from qwenlib.__main__ import build_parser, config_from_args
    args = build_parser().parse_args(["data", "--data-source", "hub", "--dataset-config", "none"])
    assert config_from_args(args).dataset_config is None
    args = build_parser().parse_args(["data", "--data-source", "hub", "--dataset-config", "python"])
    assert config_from_args(args).dataset_config == "python"


def test_a_message_that_names_no_setting_is_shown_as_written():
    """Only a ConfigError's own field becomes a flag: a path or a text that happens to hold
    `seed=` or `max_steps must` is not rewritten (a regular expression used to)."""
    from qwenlib.__main__ import _one_line
    for text in ("/runs/seed=3/best.pt is not a checkpoint", "top_p must be quoted: 'max_steps=2'"):
        assert _one_line(ValueError(text)) == text
    from qwenlib.config import ConfigError
    error = ConfigError("PretrainingConfig.max_steps=0: must be positive", "max_steps", 0,
                        "must be positive")
    assert _one_line(error) == "--max-steps 0: must be positive"
