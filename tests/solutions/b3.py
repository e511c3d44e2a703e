"""Right and wrong answers to the exercises of engineering notebook B3 (Hugging Face)."""

import json
import struct


def hf_name(name):
    return name if name.startswith("lm_head.") else "model." + name


def _by_first_part(name):
    first, _, _ = name.partition(".")
    return name if first == "lm_head" else f"model.{name}"


def read_header(path):
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")   # 8 bytes, little-endian
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)                   # not a tensor
    return header


def _with_struct(path):
    raw = open(path, "rb").read()
    (length,) = struct.unpack("<Q", raw[:8])
    return {k: v for k, v in json.loads(raw[8:8 + length]).items() if k != "__metadata__"}


ALTERNATIVE = {"hf_name": [_by_first_part], "read_header": [_with_struct]}


def _prefix_all(name):                   # the output layer is not under model.
    return "model." + name


def _unchanged(name):                    # transformers nests the body under model.
    return name


def _transformer_prefix(name):           # GPT-2's prefix, not Qwen3's
    return name if name.startswith("lm_head.") else "transformer." + name


def _big_endian(path):
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "big")
        return json.loads(f.read(length))


def _keeps_metadata(path):
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(length))


def _four_byte_length(path):
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(4), "little")
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return header


WRONG = {"hf_name": [_prefix_all, _unchanged, _transformer_prefix],
         "read_header": [_big_endian, _keeps_metadata, _four_byte_length]}
