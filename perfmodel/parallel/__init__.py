"""Several devices: collectives (alpha-beta), plans and their placement on link tiers, data parallelism
(DDP buckets overlapped with backward), pipeline and tensor parallelism, sync / async / mixed training
with stragglers, and evaluate(): the one iteration path of predict, sweep and plan search."""
