"""Checks for the exercises at the end of each chapter: ``qwenlib.exercises.check_...``.

Hand-written (the exporter never touches this file); the checks themselves are
generated from the chapters' notebooks into ``qwenlib/exercises/chNN.py``.
"""

from qwenlib.exercises.ch01 import check_honest_split, check_make_pair, check_num_windows
from qwenlib.exercises.ch02 import check_layer_norm_via_rms, check_rms_norm
from qwenlib.exercises.ch03 import check_rope_angle, check_rotate_half
from qwenlib.exercises.ch04 import check_causal_mask, check_kv_cache_bytes
from qwenlib.exercises.ch05 import check_count_parameters, check_swiglu
from qwenlib.exercises.ch06 import check_muon_split, check_newton_schulz_step
from qwenlib.exercises.ch07 import check_accumulation, check_lr_schedule
from qwenlib.exercises.ch08 import check_greedy_decode, check_top_p
from qwenlib.exercises.ch09 import check_bits_per_character, check_early_stop
from qwenlib.exercises.ch10 import check_per_process_batch, check_shard
from qwenlib.exercises.appendix_a import check_ce_logit_gradient, check_chunked_loss

__all__ = [
    "check_accumulation",
    "check_bits_per_character",
    "check_causal_mask",
    "check_ce_logit_gradient",
    "check_chunked_loss",
    "check_count_parameters",
    "check_early_stop",
    "check_greedy_decode",
    "check_honest_split",
    "check_kv_cache_bytes",
    "check_layer_norm_via_rms",
    "check_lr_schedule",
    "check_make_pair",
    "check_muon_split",
    "check_newton_schulz_step",
    "check_num_windows",
    "check_per_process_batch",
    "check_rms_norm",
    "check_rope_angle",
    "check_rotate_half",
    "check_shard",
    "check_swiglu",
    "check_top_p",
]
