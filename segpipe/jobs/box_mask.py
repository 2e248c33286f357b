"""The ``box-mask`` job kind: the mask of the object inside a box an annotator drew in Label Studio (its
smart rectangle tool), from the model's own mask head run on that box (`segpipe.models.box_prompt`).

Queued on the ``interactive`` queue by the Label Studio backend (`segpipe.api.labelstudio.box_requests`),
which waits for it. The model comes from the worker's model cache, so once a version is loaded a
request costs one backbone pass. The answer is one artifact, ``box_mask.json``::

    {"height": H, "width": W, "label_given": bool,
     "row": {"instance", "category_id", "category_name", "score", "bbox", "rle"}}

``row`` is a row as the prediction store keeps one (original category id, ``bbox`` as ``[x, y, w, h]``
pixels, compressed COCO RLE), or null when nothing of the box reaches the mask threshold. It is not
written to the prediction store: one object under a box is no prediction of the whole image, and the
store's "latest masks of this image" must stay the model's full predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

from segpipe.errors import DataError
from segpipe.jobs.model_refs import resolve_model_ref, resolve_version
from segpipe.jobs.run import JobRun
from segpipe.jobs.specs import BoxMaskSpec

RESULT = "box_mask.json"


def box_pixels(box: tuple[float, float, float, float], height: int, width: int) -> tuple[float, float, float, float]:
    """Label Studio's ``(x, y, width, height)`` in percent of the image → ``(x1, y1, x2, y2)`` pixels."""
    x, y, w, h = box
    return (x * width / 100.0, y * height / 100.0, (x + w) * width / 100.0, (y + h) * height / 100.0)


def run_box_mask(run: JobRun, spec: BoxMaskSpec) -> dict[str, str]:
    from segpipe.data.images import read_image
    from segpipe.engine.model_cache import cached_model
    from segpipe.masks import encode
    from segpipe.masks.rows import prediction_rows
    from segpipe.models.box_prompt import mask_for_box
    from segpipe.prediction import Instance, Prediction
    from segpipe.storage.disk import write_text_atomic

    version = resolve_version(spec.model, run.stores)
    if version is not None:  # which version NAME@production meant when this job ran
        run.stores.jobs.record_model(run.job_id, version.name, version.version)
    loaded = cached_model(resolve_model_ref(spec.model, run.stores, version=version), spec.device,
                          capacity=run.settings.model_cache_models)
    source = Path(str(spec.image))
    image = read_image(source)
    height, width = image.shape[:2]
    names = list(loaded.category_map.names)
    label = names.index(spec.label) + loaded.category_map.offset if spec.label in names else None
    box = box_pixels(spec.box, height, width)
    try:
        found = mask_for_box(loaded.model, image, box, label)
    except DataError as e:
        raise DataError(f"image {source.name}: {e}") from None
    row = None
    if found.mask.any():
        clipped = (max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3]))
        prediction = Prediction(image_id=source.stem, task="instance", height=height, width=width,
                                instances=[Instance(clipped, found.label, found.score, encode.mask_to_rle(found.mask))])
        row = prediction_rows(prediction, loaded.category_map)[0]
    path = run.folder / RESULT
    write_text_atomic(path, json.dumps({"height": height, "width": width, "label_given": label is not None,
                                        "row": row}))
    return {RESULT: run.register(RESULT, path)}
