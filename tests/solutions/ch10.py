"""Right and wrong answers to the exercises of chapter 10."""


def unshard(shards):
    # item i of rank r was position i * world_size + r of the order: read them row by row
    return [item for row in zip(*shards) for item in row]


def per_process_batch(global_batch, world_size, accumulation):
    if global_batch % (world_size * accumulation):
        raise ValueError(f"{global_batch} windows cannot be split into {world_size} processes "
                         f"x {accumulation} micro-batches")
    return global_batch // (world_size * accumulation)


WRONG = {
    "unshard": [lambda shards: [item for shard in shards for item in shard],   # rank after rank
                lambda shards: [item for row in zip(*shards[::-1]) for item in row],  # ranks reversed
                lambda shards: sorted(item for shard in shards for item in shard)],   # sorts the ids
    "per_process_batch": [lambda g, w, a: g // (w * a),  # never refuses
                          lambda g, w, a: g // w,
                          lambda g, w, a: per_process_batch(g, 1, a)],
}


def _unshard_by_index(shards):
    world_size = len(shards)
    total = sum(len(s) for s in shards)
    return [shards[i % world_size][i // world_size] for i in range(total)]


def _per_process_batch_with_divmod(global_batch, world_size, accumulation):
    size, rest = divmod(global_batch, world_size * accumulation)
    if rest:
        raise ValueError("does not divide")
    return size


ALTERNATIVE = {"unshard": [_unshard_by_index], "per_process_batch": [_per_process_batch_with_divmod]}
