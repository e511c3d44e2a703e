"""Right and wrong answers to the exercises of chapter 10."""


def shard(order, rank, world_size):
    cut = order[: len(order) // world_size * world_size]
    return cut[rank::world_size]


def per_process_batch(global_batch, world_size, accumulation):
    if global_batch % (world_size * accumulation):
        raise ValueError(f"{global_batch} windows cannot be split into {world_size} processes "
                         f"x {accumulation} micro-batches")
    return global_batch // (world_size * accumulation)


def _contiguous_blocks(order, rank, world_size):
    size = len(order) // world_size
    return order[rank * size:(rank + 1) * size]


WRONG = {
    "shard": [lambda order, rank, world_size: order[rank::world_size],  # uneven shards
              _contiguous_blocks,
              lambda order, rank, world_size: order[: len(order) // world_size]],
    "per_process_batch": [lambda g, w, a: g // (w * a),  # never refuses
                          lambda g, w, a: g // w,
                          lambda g, w, a: per_process_batch(g, 1, a)],
}
