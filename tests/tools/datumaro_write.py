"""Run INSIDE the datumaro venv (not segpipe's): write an annotated dataset the way CVAT exports it, with
datumaro's own exporters (CVAT's export formats are datumaro's), and zip it as CVAT hands it out.

    python datumaro_write.py FORMAT SPEC.json OUT.zip

FORMAT is a datumaro exporter: ``coco_instances`` (CVAT "COCO 1.0"), ``voc_segmentation`` (CVAT
"Segmentation mask 1.1") or ``cvat`` (CVAT for images 1.1). SPEC.json is
``{"labels": [names], "colours": {name: [r, g, b]} (optional),
"items": [{"id", "image": PNG path, "objects": [{"label": name, "mask": PNG path}]}]}`` with one 0/255 PNG per
object. Prints ``{"files": [...]}``, the archive's members.
"""

import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from datumaro.components.annotation import AnnotationType, LabelCategories, Mask
from datumaro.components.dataset import Dataset
from datumaro.components.dataset_base import DatasetItem
from datumaro.components.media import Image
from PIL import Image as PILImage


def main() -> None:
    fmt, spec_path, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    spec = json.loads(spec_path.read_text())
    labels = spec["labels"]
    items = []
    for item in spec["items"]:
        pixels = np.asarray(PILImage.open(item["image"]).convert("RGB"))
        annotations = [
            Mask(image=np.asarray(PILImage.open(obj["mask"])) > 0, label=labels.index(obj["label"]), id=n + 1,
                 group=n + 1, z_order=n)
            for n, obj in enumerate(item["objects"])
        ]
        items.append(DatasetItem(id=item["id"], subset="default", media=Image.from_numpy(pixels),
                                 annotations=annotations))
    categories = {AnnotationType.label: LabelCategories.from_iterable(labels)}
    dataset = Dataset.from_iterable(items, categories=categories)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "export"
        extra = {}
        if fmt == "voc_segmentation":  # as CVAT exports it: its own label colours in labelmap.txt
            colours = {"background": ((0, 0, 0), [], [])}
            colours |= {name: (tuple(spec["colours"][name]), [], []) for name in labels} if "colours" in spec else {}
            extra = {"apply_colormap": True, "label_map": colours if "colours" in spec else "source"}
        dataset.export(str(folder), fmt, save_media=True, **extra)
        with zipfile.ZipFile(out, "w") as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
        print(json.dumps({"files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())}))


if __name__ == "__main__":
    main()
