"""Checks for the exercises at the end of each chapter: ``qwenlib.exercises.check_...``.

Hand-written (the exporter never touches this file); the checks themselves are
generated from the chapters' notebooks into ``qwenlib/exercises/chNN.py``.
"""

from qwenlib.exercises.ch01 import check_honest_split, check_make_pair, check_num_windows
from qwenlib.exercises.ch02 import check_fold_gain, check_layer_norm_via_rms, check_rms_norm
from qwenlib.exercises.ch03 import check_apply_rope, check_interleaved_to_rotate_half, check_ones_score
from qwenlib.exercises.ch04 import check_causal_attention, check_tokens_that_fit, check_zero_query_output
from qwenlib.exercises.ch05 import check_count_parameters, check_decoder_block, check_swiglu
from qwenlib.exercises.ch06 import (check_muon_split, check_newton_schulz, check_normalize_neurons,
                                   check_singular_values_after_ns)
from qwenlib.exercises.ch07 import check_accumulation, check_update, check_warmup_linear
from qwenlib.exercises.ch08 import check_greedy_decode, check_top_k_keep, check_top_p_filter
from qwenlib.exercises.ch09 import check_early_stop, check_same_bits_loss, check_your_model
from qwenlib.exercises.ch09b import check_best_is_inside, check_crossing_update
from qwenlib.exercises.ch09c import check_parallel_block, check_verdict
from qwenlib.exercises.ch10 import check_per_process_batch, check_unshard
from qwenlib.exercises.appendix_a import check_chunked_backward, check_chunked_loss
from qwenlib.exercises.b1 import check_gguf_data_bytes, check_gguf_header
from qwenlib.exercises.b2 import check_checksum, check_resume_index
from qwenlib.exercises.b3 import check_hf_name, check_safetensors_header
from qwenlib.exercises.b4 import check_cache_digest, check_ids_problem
from qwenlib.exercises.b5 import check_finite_number, check_heads_problem

__all__ = [
    "check_accumulation",
    "check_apply_rope",
    "check_best_is_inside",
    "check_cache_digest",
    "check_causal_attention",
    "check_checksum",
    "check_chunked_backward",
    "check_chunked_loss",
    "check_count_parameters",
    "check_crossing_update",
    "check_decoder_block",
    "check_early_stop",
    "check_finite_number",
    "check_fold_gain",
    "check_gguf_data_bytes",
    "check_gguf_header",
    "check_greedy_decode",
    "check_heads_problem",
    "check_hf_name",
    "check_honest_split",
    "check_ids_problem",
    "check_interleaved_to_rotate_half",
    "check_layer_norm_via_rms",
    "check_make_pair",
    "check_muon_split",
    "check_newton_schulz",
    "check_normalize_neurons",
    "check_num_windows",
    "check_ones_score",
    "check_parallel_block",
    "check_per_process_batch",
    "check_resume_index",
    "check_rms_norm",
    "check_safetensors_header",
    "check_same_bits_loss",
    "check_singular_values_after_ns",
    "check_swiglu",
    "check_tokens_that_fit",
    "check_top_k_keep",
    "check_top_p_filter",
    "check_unshard",
    "check_update",
    "check_verdict",
    "check_warmup_linear",
    "check_your_model",
    "check_zero_query_output",
]
