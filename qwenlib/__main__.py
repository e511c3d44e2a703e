"""``python -m qwenlib``: the course's library from a shell.

Hand-written (the exporter never touches this file).

    python -m qwenlib data  [--max-tokens N ...]   prepare and cache the data, print statistics
    python -m qwenlib train [--max-steps N ...] [--resume PATH]   train, save checkpoints
    torchrun --nproc_per_node=N -m qwenlib train ...   the same, in N processes (chapter 10)
    python -m qwenlib generate --checkpoint PATH --prompt TEXT [--temperature T ...]
    python -m qwenlib export --checkpoint PATH --output-dir DIR   a folder transformers loads

Every field of ``PretrainingConfig`` is a flag: ``gradient_accumulation_steps``
is ``--gradient-accumulation-steps``.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per PretrainingConfig field, with the field's default."""
    group = parser.add_argument_group("configuration (PretrainingConfig fields)")
    for field in dataclasses.fields(PretrainingConfig):
        kind = {"int": int, "float": float, "bool": _parse_bool,
                "int | None": _parse_optional_int}.get(field.type, str)
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


def _load_tokenizer(checkpoint: Path, config: PretrainingConfig):
    """The tokenizer `train` saved beside the checkpoint, else the data cache's."""
    folder = checkpoint.parent / "tokenizer"
    if folder.is_dir():
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(folder)
    from qwenlib.data import load_and_cache_data
    print(f"(no {folder}: taking the tokenizer from the data of the checkpoint's config)",
          file=sys.stderr)
    return load_and_cache_data(config, verbose=False)[1]


def cmd_generate(args: argparse.Namespace) -> int:
    from qwenlib.generation import stream_text
    from qwenlib.training import CheckpointError, load_model

    try:
        model = load_model(args.checkpoint, args.device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tokenizer = _load_tokenizer(Path(args.checkpoint), model.config)
    try:
        pieces = stream_text(model, tokenizer, args.prompt, args.max_length, args.temperature,
                             args.top_k, args.top_p, args.seed)
        print(args.prompt, end="", flush=True)
        for piece in pieces:
            print(piece, end="", flush=True)
    except ValueError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    print()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from qwenlib.hf import save_hf
    from qwenlib.training import CheckpointError, load_model

    try:
        model = load_model(args.checkpoint, "cpu")
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tokenizer = _load_tokenizer(Path(args.checkpoint), model.config)
    try:
        folder = save_hf(model, tokenizer, args.output_dir)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {folder}: load it with transformers' AutoModelForCausalLM.from_pretrained"
          f"('{folder}') and AutoTokenizer.from_pretrained('{folder}')")
    return 0


def cmd_train(config: PretrainingConfig, resume: str | None = None,
              timeout_s: float = 600.0, allow_data_change: bool = False) -> int:
    from qwenlib.data import load_and_cache_data, make_dataloaders
    from qwenlib.distributed import DistributedTrainer, init_distributed
    from qwenlib.training import CheckpointError, PretrainingTrainer

    rank, world_size, device = init_distributed(timeout_s)  # (0, 1, ...) without torchrun
    try:
        if rank == 0:  # builds the cache; the other processes then read it
            _, tokenizer, tokens = load_and_cache_data(config)
            tokenizer.save_pretrained(Path(config.output_dir) / "tokenizer")  # for `generate`
        if world_size > 1:
            import torch.distributed as dist
            dist.barrier()
            if rank > 0:
                _, tokenizer, tokens = load_and_cache_data(config, verbose=False)
            print(f"process {rank} of {world_size} on {device}", flush=True)
        train_loader, val_loader = make_dataloaders(config, tokens)
        trainer = (DistributedTrainer if world_size > 1 else PretrainingTrainer)(config, device)
        try:
            model, metrics = trainer.train(train_loader, val_loader, resume_from=resume,
                                           allow_data_change=allow_data_change)
        except CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except RuntimeError as e:
            if world_size == 1:
                raise
            print(f"error: {e}", file=sys.stderr)
            return 1
    finally:
        if world_size > 1:
            import torch.distributed as dist
            dist.destroy_process_group()
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
    parser = argparse.ArgumentParser(prog="python -m qwenlib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
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
    gen.add_argument("--max-length", type=int, default=100, help="new tokens at most (default 100)")
    gen.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    gen.add_argument("--top-k", type=int, default=50, help="0 = no limit (default 50)")
    gen.add_argument("--top-p", type=float, default=0.9, help="1 = no limit (default 0.9)")
    gen.add_argument("--seed", type=int, default=None, help="makes sampling repeatable")
    gen.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best available)")
    export = commands.add_parser("export", help="write a checkpoint as a folder transformers "
                                 "loads (Qwen3ForCausalLM + tokenizer)")
    export.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a checkpoint written by train, e.g. models/best_model1.pt")
    export.add_argument("--output-dir", required=True, metavar="DIR",
                        help="the folder to write (new, empty, or an earlier export)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "generate":
        return cmd_generate(args)
    if args.command == "export":
        return cmd_export(args)
    try:
        config = config_from_args(args)
    except ConfigError as e:
        parser.error(str(e))
    if args.command == "train":
        return cmd_train(config, args.resume, args.dist_timeout, args.allow_data_change)
    return cmd_data(config)


if __name__ == "__main__":
    sys.exit(main())
