"""Run INSIDE the Label Studio venv (label-studio-sdk there), not segpipe's.

    python labelstudio_read.py check CONFIG.xml TASKS.json
        → validates the config and every prediction with label-studio-sdk's LabelInterface, decodes
          every brush region with the SDK's own RLE decoder; prints JSON
          {"errors": [...], "tasks": [{"image", "regions": [{"type", "label", "score", "mask_bits", ...}]}]}
    python labelstudio_read.py server URL TOKEN CONFIG.xml TASKS.json
        → creates a project with CONFIG, imports TASKS through the server's API, reads the tasks and their
          predictions back through the API in the order the server lists them (the Data Manager's
          default), and prints the same JSON as ``check`` with each task's ``id``.

Masks go back as base64 of ``numpy.packbits(mask.ravel())`` with the region's height and width.
"""

import base64
import json
import sys

import numpy as np
from label_studio_sdk.converter.brush import decode_rle
from label_studio_sdk.label_interface import LabelInterface


def _regions(result):
    regions = []
    for region in result:
        value = region["value"]
        kind = region["type"]
        out = {"type": kind, "from_name": region["from_name"], "score": region.get("score"),
               "width": region.get("original_width"), "height": region.get("original_height")}
        labels = value.get(kind) or []
        out["label"] = labels[0] if labels else None
        if kind == "brushlabels":
            h, w = region["original_height"], region["original_width"]
            mask = np.reshape(decode_rle(value["rle"]), [h, w, 4])[:, :, 3] > 0
            out["mask_bits"] = base64.b64encode(np.packbits(mask.ravel()).tobytes()).decode()
        elif kind == "polygonlabels":
            out["points"] = value["points"]
        elif kind == "rectanglelabels":
            out["rect"] = [value["x"], value["y"], value["width"], value["height"]]
        regions.append(out)
    return regions


def _report(config, tasks):
    interface = LabelInterface(config)
    errors = []
    read = []
    for index, task in enumerate(tasks):
        for prediction in task["predictions"]:
            problems = interface.validate_prediction(prediction, return_errors=True)
            if problems is not True and problems:
                errors.append({"task": index, "errors": problems})
        first = task["predictions"][0] if task["predictions"] else {"result": []}
        read.append({"id": task.get("id"), "image": task["data"]["image"],
                     "key": task["data"].get("segpipe_image_id"), "data": task["data"],
                     "model_version": first.get("model_version"),
                     "regions": _regions(first["result"])})
    return {"errors": errors, "tasks": read}


def check(config_path, tasks_path):
    with open(config_path) as f:
        config = f.read()
    with open(tasks_path) as f:
        tasks = json.load(f)
    return _report(config, tasks)


def server(url, token, config_path, tasks_path):
    from label_studio_sdk.client import LabelStudio

    with open(config_path) as f:
        config = f.read()
    with open(tasks_path) as f:
        tasks = json.load(f)
    client = LabelStudio(base_url=url, api_key=token)
    project = client.projects.create(title="segpipe import", label_config=config)
    client.projects.import_tasks(id=project.id, request=tasks)
    back = []
    for task in client.tasks.list(project=project.id):  # the Data Manager's default order
        predictions = [{"model_version": p.model_version, "score": p.score, "result": p.result}
                       for p in client.predictions.list(task=task.id)]
        back.append({"id": task.id, "data": task.data, "predictions": predictions})
    report = _report(config, back)
    report["project"] = project.id
    report["task_count"] = len(back)
    return report


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    print(json.dumps(check(*args) if mode == "check" else server(*args)))
