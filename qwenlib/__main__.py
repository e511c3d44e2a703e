"""``python -m qwenlib``: the course's library from a shell.

Hand-written (the exporter never touches this file).

    python -m qwenlib data  [--max-tokens N ...]   prepare and cache the data, print statistics
    python -m qwenlib train [--max-steps N ...] [--resume PATH]   train, save checkpoints

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


def _greedy_sample(model, tokenizer, prompt: str, new_tokens: int = 40) -> str:
    """A short greedy continuation (chapter 8 builds the real generator)."""
    import torch

    device = next(model.parameters()).device
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        for _ in range(new_tokens):
            window = torch.tensor([ids[-model.config.max_seq_len:]], device=device)
            ids.append(int(model(window)[0, -1].argmax()))
    return tokenizer.decode(ids)


def cmd_train(config: PretrainingConfig, resume: str | None = None) -> int:
    from qwenlib.data import load_and_cache_data, make_dataloaders
    from qwenlib.training import CheckpointError, PretrainingTrainer

    _, tokenizer, tokens = load_and_cache_data(config)
    train_loader, val_loader = make_dataloaders(config, tokens)
    try:
        model, metrics = PretrainingTrainer(config).train(train_loader, val_loader,
                                                          resume_from=resume)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = config.output_dir
    if metrics.get("interrupted"):
        return 130
    print(f"\n{metrics['step']} updates in {metrics['elapsed_s'] / 60:.1f} min on "
          f"{metrics['device']}: val loss {metrics.get('val_loss', float('nan')):.4f}, accuracy "
          f"{metrics.get('val_accuracy', float('nan')):.2%}, perplexity "
          f"{metrics.get('val_perplexity', float('nan')):.1f}")
    print(f"checkpoints and metrics.json in {out}/ (best: {out}/best_model1.pt, "
          f"final: {out}/final_model1.pt)")
    print("sample (greedy):", repr(_greedy_sample(model.eval(), tokenizer, "The ")))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qwenlib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_config_flags(commands.add_parser("data", help="prepare and cache the data, print its statistics"))
    train = commands.add_parser("train", help="train a model (chapter 7's PretrainingTrainer)")
    train.add_argument("--resume", metavar="PATH", default=None,
                       help="continue exactly from a checkpoint (e.g. models/latest.pt)")
    add_config_flags(train)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as e:
        parser.error(str(e))
    if args.command == "train":
        return cmd_train(config, args.resume)
    return cmd_data(config)


if __name__ == "__main__":
    sys.exit(main())
