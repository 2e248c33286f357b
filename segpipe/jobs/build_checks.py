"""The checks of a job that need the model libraries, run first thing on the worker.

`segpipe.jobs.preflight` refuses a bad job at submit without importing torch (the API never loads it). What only
torch-side code can check runs here, before any data is read or any network is built, so the job fails at
once with a `ConfigError` naming the key, as a refusal at submit would have:

- ``augment.pipeline``: a custom albumentations pipeline is built (albumentations imports torch);
- ``model``: the builder registry's own check (the model is registered with a builder, as well as named in
  the catalogue the API reads).
"""

from __future__ import annotations

from segpipe.config import JobConfig


def check_train_build(config: JobConfig) -> None:
    """A training config's model section and training transform build (`ConfigError` naming the key)."""
    import segpipe.models  # noqa: F401 - registers every builder
    from segpipe.data.augment import build_transform
    from segpipe.models.registry import check_model

    check_model(config.model, config.task)
    if config.data is not None:
        build_transform(config.augment, config.task, config.train.image_size, train=True,
                        ignore_index=config.data.ignore_index)
