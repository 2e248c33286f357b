"""The prediction-format layer: every way predictions leave segpipe goes through `PREDICTION_FORMATS` by name.

``segpipe predict --format``, a predict job's ``predict.formats``, ``segpipe masks JOB --format`` and
``GET /jobs/{id}/export?format=`` all call `export` (or `MultiExport`) with `ExportImage`\\ s built from
the one row type (`segpipe.masks.rows`); `kept_rows` is the one filter (score threshold, and the
categories of ``ExportContext.only_categories``) every writer applies. Formats (see each module for its files and an example):

    coco          COCO instances dataset, CVAT "COCO 1.0" layout      (coco.py)
    coco-results  COCO results list for COCOeval                      (coco.py)
    cvat-mask     CVAT "Segmentation mask 1.1" zip                    (cvat_mask.py)
    label-studio  Label Studio tasks with predictions + label config  (label_studio.py)
    png           class-id maps; instance maps + sidecar JSON         (png.py)
    polygons      polygons JSON per image                             (polygons.py)
    overlay, csv  pictures to look at; a table of classes             (files.py)
"""

from segpipe.masks.formats import coco, cvat_mask, files, label_studio, png, polygons  # noqa: F401  (registers)
from segpipe.masks.formats.base import (
    PREDICTION_FORMATS,
    TASKS,
    ExportContext,
    FormatWriter,
    MultiExport,
    check_formats,
    default_formats,
    export,
    formats_for,
    job_level_formats,
    kept_rows,
    parse_category_ids,
    per_image_formats,
    prelabel_rows,
)

__all__ = ["PREDICTION_FORMATS", "TASKS", "ExportContext", "FormatWriter", "MultiExport", "check_formats",
           "default_formats", "export",
           "formats_for", "job_level_formats", "kept_rows", "parse_category_ids", "per_image_formats",
           "prelabel_rows"]
