"""qwenlib: a small Qwen3-style language model library, built chapter by chapter in qwen-course.

Hand-written (the exporter never touches this file): it re-exports the public API
from the generated modules, whose source is the notebooks in ``notebooks/``.
"""

from qwenlib.attention import Qwen3Attention
from qwenlib.checkpoint import CheckpointError, load_checkpoint, load_model
from qwenlib.config import ConfigError, PretrainingConfig
from qwenlib.distributed import DistributedTrainer, init_distributed
from qwenlib.data import (TextTokenDataset, load_and_cache_data, make_dataloaders,
                          split_tokens)
from qwenlib.generation import generate_batch, generate_text, stream_text
from qwenlib.gguf import save_gguf
from qwenlib.hf import from_hf, from_pretrained, save_hf, to_hf
from qwenlib.loss import linear_cross_entropy
from qwenlib.model import MinimalLLM
from qwenlib.muon import (Muon, setup_adamw_optimizer, setup_muon_optimizer, setup_optimizers,
                          zeropower_via_newtonschulz5)
from qwenlib.norm import RMSNorm
from qwenlib.rope import Rotary
from qwenlib.runtime import get_device, has_native_bf16, seed_everything, training_dtype
from qwenlib.training import PretrainingTrainer
from qwenlib.widgets import GenerationWidget

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DistributedTrainer",
    "GenerationWidget",
    "MinimalLLM",
    "Muon",
    "PretrainingConfig",
    "PretrainingTrainer",
    "Qwen3Attention",
    "RMSNorm",
    "Rotary",
    "TextTokenDataset",
    "from_hf",
    "from_pretrained",
    "generate_batch",
    "generate_text",
    "get_device",
    "has_native_bf16",
    "init_distributed",
    "linear_cross_entropy",
    "load_and_cache_data",
    "load_checkpoint",
    "load_model",
    "make_dataloaders",
    "seed_everything",
    "setup_muon_optimizer",
    "setup_adamw_optimizer",
    "setup_optimizers",
    "split_tokens",
    "stream_text",
    "to_hf",
    "training_dtype",
    "save_hf",
    "save_gguf",
    "zeropower_via_newtonschulz5",
]
