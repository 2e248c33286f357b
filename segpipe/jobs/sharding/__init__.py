"""Sharded prediction: a large predict job split into ``predict-shard`` jobs that any worker takes.

- `coordinate` — the parent's side: split, hand the parent's lease to its shards, finish it at the end;
- `runner` — one shard: predict its images into the parent's predictions and files;
- the rows and the hand-off live in `segpipe.stores.shards`.
"""
