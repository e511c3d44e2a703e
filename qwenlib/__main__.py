"""``python -m qwenlib``: the course's library from a shell.

Hand-written (the exporter never touches this file).

    python -m qwenlib data  [--max-tokens N ...]   prepare and cache the data, print statistics
    python -m qwenlib train [--max-steps N ...] [--resume PATH]   train, save checkpoints
    torchrun --nproc_per_node=N -m qwenlib train ...   the same, in N processes (chapter 10)
    python -m qwenlib generate --checkpoint PATH --prompt TEXT [--temperature T ...]
    python -m qwenlib export --checkpoint PATH --output-dir DIR   a folder transformers loads
    python -m qwenlib export --checkpoint PATH --format gguf --output FILE   llama.cpp, Ollama

Every field of ``PretrainingConfig`` is a flag: ``gradient_accumulation_steps``
is ``--gradient-accumulation-steps``. A bad value, a broken file or a full disk is one
``error: ...`` line (exit code 2 for bad input, 1 for other failures); ``--debug`` (or
``QWENLIB_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import signal
import sys
from pathlib import Path

from qwenlib.config import ConfigError, PretrainingConfig


def _parse_bool(text: str) -> bool:
    if text.lower() in {"1", "true", "yes", "on"}:
        return True
    if text.lower() in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse_optional_int(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or none, got {text!r}") from None


def _parse_optional_str(text: str) -> str | None:
    return None if text.lower() == "none" else text


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (which flag, what is wrong, where the list is)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} ({self.prog} --help lists the flags)\n")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per PretrainingConfig field, with the field's default."""
    group = parser.add_argument_group("configuration (PretrainingConfig fields)")
    for field in dataclasses.fields(PretrainingConfig):
        kind = {"int": int, "float": float, "bool": _parse_bool,
                "int | None": _parse_optional_int, "str | None": _parse_optional_str,
                }.get(field.type, str)
        group.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=kind,
                           default=field.default, metavar=field.type.split(" ")[0].upper(),
                           help=f"default: {field.default!r}")


def config_from_args(args: argparse.Namespace) -> PretrainingConfig:
    names = {f.name for f in dataclasses.fields(PretrainingConfig)}
    return PretrainingConfig(**{k: v for k, v in vars(args).items() if k in names})


def cmd_data(config: PretrainingConfig) -> int:
    from qwenlib.data import load_and_cache_data, make_dataloaders

    texts, tokenizer, tokens = load_and_cache_data(config)
    train_loader, val_loader = make_dataloaders(config, tokens)
    characters = sum(map(len, texts))
    print(f"{len(texts):,} documents, {characters:,} characters; tokenizer of "
          f"{len(tokenizer):,} tokens; {len(tokens):,} tokens kept")
    print(f"train: {len(train_loader.dataset):,} windows ({len(train_loader):,} batches); "
          f"val: {len(val_loader.dataset):,} windows ({len(val_loader):,} batches)")
    return 0


def _load_tokenizer(checkpoint: Path, given: str | None, fingerprint: str | None = None):
    """The tokenizer `train` saved beside the checkpoint, or the one given with --tokenizer.
    Never a substitute: another tokenizer would decode the ids into other text, so one
    whose vocabulary differs from the checkpoint's `fingerprint` is refused."""
    from qwenlib.cache import refuse_special_files, tokenizer_fingerprint

    folder = Path(given) if given else checkpoint.parent / "tokenizer"
    if not folder.is_dir():
        if given:
            raise FileNotFoundError(f"--tokenizer {given}: no such folder")
        raise FileNotFoundError(f"{folder} is missing: it holds the tokenizer that {checkpoint} "
                                "was trained with (train writes it beside the checkpoints); "
                                "pass that tokenizer's folder with --tokenizer DIR")
    refuse_special_files(folder, "a tokenizer's files")
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # noqa: BLE001 - tokenizers' own errors (a JSON file that is not
        # a tokenizer gives KeyError or a Rust exception): all mean "not a tokenizer"
        raise FileNotFoundError(f"{folder} holds no tokenizer that transformers can load "
                                f"({str(e).splitlines()[0][:200]}); pass one with --tokenizer DIR") from None
    if fingerprint is not None and tokenizer_fingerprint(tokenizer) != fingerprint:
        raise ValueError(f"{folder} holds another tokenizer than the one {checkpoint} was "
                         "trained with (its vocabulary differs), so the model's ids would "
                         "decode into other text; pass the training run's tokenizer folder "
                         "with --tokenizer DIR")
    return tokenizer


def _check_vocabulary(model, tokenizer, folder: str) -> None:
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"the tokenizer in {folder} has {len(tokenizer):,} tokens but the model "
                         f"only {model.config.vocab_size:,} rows: it is not the model's tokenizer")


def _load(checkpoint: str, device: str | None):
    """(the model of a checkpoint, the fingerprint of its data's tokenizer or None)."""
    from qwenlib.checkpoint import load_checkpoint, load_model

    state = load_checkpoint(checkpoint)
    return load_model(checkpoint, device, state), state.get("tokenizer_sha256")


def cmd_generate(args: argparse.Namespace) -> int:
    from qwenlib.generation import Sampling, stream_text

    sampling = Sampling(args.max_length, args.temperature, args.top_k, args.top_p, args.seed)
    model, fingerprint = _load(args.checkpoint, args.device)
    tokenizer = _load_tokenizer(Path(args.checkpoint), args.tokenizer, fingerprint)
    _check_vocabulary(model, tokenizer, args.tokenizer or "the checkpoint's folder")
    pieces = stream_text(model, tokenizer, args.prompt, **dataclasses.asdict(sampling))
    try:
        print(args.prompt, end="", flush=True)
        for piece in pieces:
            print(piece, end="", flush=True)
    except KeyboardInterrupt:  # Ctrl-C: keep what was printed, end the line
        print(flush=True)
        print("(stopped by Ctrl-C)", file=sys.stderr)
        return 130
    print()
    return 0


def _check_export_flags(args: argparse.Namespace) -> None:
    if args.format == "hf" and (args.output is not None or args.gguf_dtype is not None):
        raise ValueError("--output and --gguf-dtype are for --format gguf; --format hf "
                         "writes a folder: give --output-dir DIR")
    if args.format == "hf" and args.output_dir is None:
        raise ValueError("--format hf writes a folder: give --output-dir DIR")
    if args.format == "gguf" and (args.output is None or args.output_dir is not None):
        raise ValueError("--format gguf writes one file: give --output FILE.gguf "
                         "(not --output-dir)")


def cmd_export(args: argparse.Namespace) -> int:
    _check_export_flags(args)
    model, fingerprint = _load(args.checkpoint, "cpu")
    tokenizer = _load_tokenizer(Path(args.checkpoint), args.tokenizer, fingerprint)
    _check_vocabulary(model, tokenizer, args.tokenizer or "the checkpoint's folder")
    if args.format == "gguf":
        from qwenlib.gguf import save_gguf

        path = save_gguf(model, tokenizer, args.output, args.gguf_dtype or "f32")
        print(f"wrote {path}: run it with llama.cpp (llama-cli -m {path} -p \"The \" -no-cnv) "
              f"or Ollama (a Modelfile saying FROM ./{path.name})")
        return 0
    from qwenlib.hf import save_hf

    folder = save_hf(model, tokenizer, args.output_dir)
    print(f"wrote {folder}: load it with transformers' AutoModelForCausalLM.from_pretrained"
          f"('{folder}') and AutoTokenizer.from_pretrained('{folder}')")
    return 0


def cmd_train(config: PretrainingConfig, resume: str | None = None,
              timeout_s: float = 600.0, allow_data_change: bool = False) -> int:
    from qwenlib.distributed import init_distributed

    rank, world_size, device = init_distributed(timeout_s)  # (0, 1, ...) without torchrun
    try:
        with contextlib.ExitStack() as held:
            return _train(config, resume, allow_data_change, rank, world_size, device, held)
    finally:
        if world_size > 1:
            import torch.distributed as dist
            dist.destroy_process_group()


def _train(config: PretrainingConfig, resume: str | None, allow_data_change: bool,
           rank: int, world_size: int, device, held: contextlib.ExitStack) -> int:
    from qwenlib.cache import save_tokenizer
    from qwenlib.data import load_and_cache_data, make_dataloaders
    from qwenlib.distributed import DistributedTrainer
    from qwenlib.checkpoint import output_folder_lock
    from qwenlib.training import PretrainingTrainer

    if rank == 0:  # builds the cache; the other processes then read it
        _, tokenizer, tokens = load_and_cache_data(config)
        train_loader, val_loader = make_dataloaders(config, tokens)  # checks, writes nothing
        # hold the output folder (`train` holds it too) before writing into it
        held.enter_context(output_folder_lock(config.output_dir))
        save_tokenizer(tokenizer, Path(config.output_dir) / "tokenizer")  # for `generate`
    if world_size > 1:
        import torch.distributed as dist
        dist.barrier()
        if rank > 0:
            _, tokenizer, tokens = load_and_cache_data(config, verbose=False)
            train_loader, val_loader = make_dataloaders(config, tokens)
        print(f"process {rank} of {world_size} on {device}", flush=True)
    trainer = (DistributedTrainer if world_size > 1 else PretrainingTrainer)(config, device)
    try:
        model, metrics = trainer.train(train_loader, val_loader, resume_from=resume,
                                       allow_data_change=allow_data_change, tokenizer=tokenizer)
    except RuntimeError as e:
        if world_size == 1:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = config.output_dir
    if metrics.get("interrupted"):  # 128 + the signal's number, as shells report it
        return 143 if metrics.get("signal") == "SIGTERM" else 130
    if rank > 0:
        return 0
    where = metrics["device"]
    if world_size > 1:
        where = f"{world_size} processes on {where}"
    print(f"\n{metrics['step']} updates in {metrics['elapsed_s'] / 60:.1f} min on {where}: "
          f"val loss "
          f"{metrics.get('val_loss', float('nan')):.4f}, accuracy "
          f"{metrics.get('val_accuracy', float('nan')):.2%}, perplexity "
          f"{metrics.get('val_perplexity', float('nan')):.1f}")
    print(f"checkpoints and metrics.json in {out}/ (best: {out}/best_model1.pt, "
          f"final: {out}/final_model1.pt)")
    from qwenlib.generation import generate_text
    print("sample (greedy):", repr(generate_text(model, tokenizer, "The ", 40, temperature=0)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: data, train, generate, export."""
    parser = _Parser(prog="python -m qwenlib", description=__doc__.splitlines()[0],
                                     epilog="--debug (anywhere) or QWENLIB_DEBUG=1: show the "
                                     "traceback of an error instead of its one line")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_config_flags(commands.add_parser("data", help="prepare and cache the data, print its statistics"))
    train = commands.add_parser("train", help="train a model (chapter 7's PretrainingTrainer)")
    train.add_argument("--resume", metavar="PATH", default=None,
                       help="continue exactly from a checkpoint (e.g. models/latest.pt)")
    train.add_argument("--allow-data-change", action="store_true",
                       help="with --resume: continue even if the data settings differ from "
                       "the checkpoint's (a warning instead of an error)")
    train.add_argument("--dist-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="under torchrun: how long a process waits for the others before "
                       "failing (default 600)")
    add_config_flags(train)
    gen = commands.add_parser("generate", help="continue a prompt with a trained model, "
                              "streaming the text (chapter 8)")
    gen.add_argument("--checkpoint", required=True, metavar="PATH",
                     help="a checkpoint written by train, e.g. models/best_model1.pt")
    gen.add_argument("--prompt", required=True, help="the text to continue")
    from qwenlib.generation import Sampling  # the settings' one definition, defaults included
    for flag, kind, help in (("--max-length", int, "new tokens at most"),
                             ("--temperature", float, "0 = greedy"),
                             ("--top-k", _parse_optional_int, "0 or none = no limit"),
                             ("--top-p", float, "1 = no limit"),
                             ("--seed", _parse_optional_int, "makes sampling repeatable")):
        default = getattr(Sampling, flag[2:].replace("-", "_"))
        gen.add_argument(flag, type=kind, default=default, help=f"{help} (default {default})")
    gen.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best available)")
    gen.add_argument("--tokenizer", default=None, metavar="DIR",
                     help="the tokenizer's folder (default: the tokenizer/ folder train wrote "
                     "beside the checkpoint)")
    export = commands.add_parser("export", help="write a checkpoint as a folder transformers "
                                 "loads (Qwen3ForCausalLM + tokenizer), or as one GGUF file "
                                 "for llama.cpp and Ollama")
    export.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a checkpoint written by train, e.g. models/best_model1.pt")
    export.add_argument("--format", choices=("hf", "gguf"), default="hf",
                        help="hf: a transformers folder (default); gguf: one file for llama.cpp")
    export.add_argument("--output-dir", default=None, metavar="DIR",
                        help="--format hf: the folder to write (new, empty, or an earlier export)")
    export.add_argument("--output", default=None, metavar="FILE",
                        help="--format gguf: the file to write (new, or an earlier GGUF file)")
    export.add_argument("--gguf-dtype", choices=("f32", "f16"), default=None,
                        help="--format gguf: the weights' precision (default f32; f16 halves the file)")
    export.add_argument("--tokenizer", default=None, metavar="DIR",
                        help="the tokenizer's folder (default: the tokenizer/ folder train "
                        "wrote beside the checkpoint)")
    return parser


def for_the_shell(error: ConfigError) -> str:
    """A setting's error as a shell user reads it: the setting as its flag, from the error's
    own `field` (`PretrainingConfig.max_steps=0: must be positive` -> `--max-steps 0: must
    be positive`); an error that names no field keeps its message."""
    if not error.field or error.rule is None:
        return " ".join(str(error).split())
    value = "none" if error.value is None else error.value
    value = repr(value) if isinstance(value, str) and (not value or " " in value) else value
    return f"--{error.field.replace('_', '-')} {value}: {error.rule}"


def _ours(error: BaseException) -> bool:
    """True for the errors a user can fix: bad values, broken or missing files, a full or
    read-only disk, a run that diverged, a device or memory that is not there. Other
    exceptions are bugs, and keep their traceback."""
    import torch

    if isinstance(error, (ValueError, OSError, FloatingPointError, torch.OutOfMemoryError)):
        return True
    if isinstance(error, RuntimeError) and _CPU_OUT_OF_MEMORY in str(error):
        return True
    frame = error.__traceback__  # raised by qwenlib's own code
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    here = str(Path(__file__).resolve().parent)
    return frame is not None and frame.tb_frame.f_code.co_filename.startswith(here)


_CPU_OUT_OF_MEMORY = "DefaultCPUAllocator: can't allocate memory"  # torch's words for it


def _one_line(error: BaseException) -> str:
    import torch

    if _CPU_OUT_OF_MEMORY in str(error):
        wanted = re.search(r"allocate (\d+) bytes", str(error))
        size = f" ({int(wanted[1]) / 2**30:,.1f} GiB for one tensor)" if wanted else ""
        return (f"out of memory on the CPU{size}: the model or a batch is too large for this "
                "machine; lower --vocab-size, --d-model, --d-ff or --n-layers, or --batch-size")
    if isinstance(error, torch.OutOfMemoryError):
        return ("out of memory on the device: lower --batch-size (raise "
                "--gradient-accumulation-steps to keep the tokens per update) or --max-seq-len")
    if isinstance(error, OSError) and error.strerror and getattr(error, "filename", None):
        return f"{error.filename}: {error.strerror}"
    if isinstance(error, ConfigError):
        return for_the_shell(error)
    return " ".join(str(error).split()) or type(error).__name__


def run_command(args: argparse.Namespace) -> int:
    if args.command == "generate":
        return cmd_generate(args)
    if args.command == "export":
        return cmd_export(args)
    config = config_from_args(args)  # a ConfigError is one line, naming the flag
    if args.command == "train":
        return cmd_train(config, args.resume, args.dist_timeout, args.allow_data_change)
    return cmd_data(config)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("QWENLIB_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\nstopped by Ctrl-C", file=sys.stderr)
        return 130
    except Exception as error:
        if debug or not _ours(error):
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1


def _drop_interrupts_in_finalisers(unraisable) -> None:
    """A Ctrl-C that lands inside an object's finaliser (tqdm's bar, freed as the command
    returns) has nothing left to stop; Python would print it as "Exception ignored ... Traceback".
    Drop it; report anything else as Python does."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


if __name__ == "__main__":
    sys.unraisablehook = _drop_interrupts_in_finalisers
    code = main()
    # the command is over (a stopped run's checkpoint is saved): a Ctrl-C pressed once more
    # must not print a traceback from the interpreter's shutdown, or kill it with -SIGINT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)
