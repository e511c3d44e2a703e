"""``python -m qwenlib``: the course's library from a shell.

Hand-written (the exporter never touches this file).

    python -m qwenlib data  [--max-tokens N ...]   prepare and cache the data, print statistics
    python -m qwenlib train [--max-steps N ...]    train (arrives with chapter 7)

Every field of ``PretrainingConfig`` is a flag: ``gradient_accumulation_steps``
is ``--gradient-accumulation-steps``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from qwenlib.config import ConfigError, PretrainingConfig


def _parse_bool(text: str) -> bool:
    if text.lower() in {"1", "true", "yes", "on"}:
        return True
    if text.lower() in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per PretrainingConfig field, with the field's default."""
    group = parser.add_argument_group("configuration (PretrainingConfig fields)")
    for field in dataclasses.fields(PretrainingConfig):
        kind = {"int": int, "float": float, "bool": _parse_bool}.get(field.type, str)
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


def cmd_train(config: PretrainingConfig) -> int:
    cmd_data(config)
    print("\nThe trainer is not built yet: it arrives with chapter 7 (the training loop).\n"
          "The data above is prepared and cached; nothing was trained.", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwenlib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [("data", "prepare and cache the data, print its statistics"),
                            ("train", "train a model (arrives with chapter 7)")]:
        add_config_flags(commands.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as e:
        parser.error(str(e))
    return {"data": cmd_data, "train": cmd_train}[args.command](config)


if __name__ == "__main__":
    sys.exit(main())
