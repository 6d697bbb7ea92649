"""One device: the vectorised work_time, per-layer arrays of a (tensor-parallel) rank, and their caches."""
