"""The shared vocabulary: values that several layers must agree on, each named once here.

Pure (no segpipe imports, no third-party imports), so stores, the API, the CLI and the engine can all use
it without pulling in anything else. Task kinds and their traits are in `segpipe.task_kinds`; the job
kinds in the job layer's registry.
"""

from __future__ import annotations

from typing import Literal, get_args

#: Label-map value that marks pixels no loss or metric counts (crowd regions, letterbox padding).
IGNORE_INDEX = 255

#: The lowest score a prediction is kept at: what evaluation scores (COCO AP sees every instance above
#: it), what the detectors keep, and what a predict job stores (a higher threshold is a view on export).
SCORE_FLOOR = 0.05

#: How masks are written in coco / label-studio / cvat files: RLE, polygons, or both (Label Studio's
#: brush and polygon pair).
Segmentation = Literal["rle", "polygons", "both"]
SEGMENTATION_CHOICES: tuple[str, ...] = get_args(Segmentation)
DEFAULT_SEGMENTATION: Segmentation = "rle"

#: The model export formats (`segpipe.model_export.formats` registers one writer per name and checks this list
#: at import): named here so that ``segpipe export --help`` lists them without importing torch.
MODEL_EXPORT_FORMAT_NAMES: tuple[str, ...] = ("onnx", "torchscript")

#: A job's life: queued → running → succeeded | failed | cancelled.
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATES: tuple[str, ...] = get_args(JobState)
ACTIVE_STATES: tuple[str, ...] = ("queued", "running")
TERMINAL_STATES: frozenset[str] = frozenset(JOB_STATES) - frozenset(ACTIVE_STATES)


class RunFiles:
    """The file names of a run folder (``segpipe train`` / a train job), read by the job layer, the API
    (without loading a checkpoint) and run sync."""

    CONFIG = "config.yaml"  # the resolved config
    CATEGORIES = "categories.json"  # the CategoryMap: model label ↔ dataset category id and name
    METRICS = "metrics.json"  # final metrics
    METRICS_LOG = "metrics.jsonl"  # one line per evaluation
    VALIDATION = "validation.json"  # the dataset checks before training
    LOAD_REPORT = "load_report.json"  # pretrained / transferred weights: what loaded
    EXPORTS = "exports.json"  # the model exports of the run (`segpipe export`)
    LAST = "last.pt"  # the checkpoint to resume from
    BEST = "best.pt"  # the best checkpoint by the monitored metric

    #: The small files of a finished run, in the order the job layer registers them.
    SUMMARY: tuple[str, ...] = (CONFIG, CATEGORIES, METRICS, METRICS_LOG, VALIDATION)
    #: What a train job registers as its artifacts (plots and TensorBoard events besides).
    ARTIFACTS: tuple[str, ...] = (*SUMMARY, LOAD_REPORT, BEST, LAST)
    #: What a remote artifact store keeps of a run so that another machine can resume it.
    SYNCED: tuple[str, ...] = (LAST, BEST, CONFIG, CATEGORIES, METRICS_LOG)
