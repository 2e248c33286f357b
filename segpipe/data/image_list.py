"""The images a predict job reads: every image under a folder, or those a COCO file lists, each confined to
the job's roots. Read by the worker that predicts and, at submit, by the API's checks (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segpipe.data.sample import ImageId
from segpipe.errors import ConfigError
from segpipe.limits import check_text

__all__ = ["ImageItem", "image_items"]


@dataclass(frozen=True)
class ImageItem:
    """One image to predict: where it is, the id to report, and the name its output files get."""

    path: Path
    image_id: ImageId
    name: str


def image_items(images_dir: str | Path, annotations: str | Path | None = None) -> list[ImageItem]:
    """The images to predict: every image under a folder (id = relative path without suffix), or the
    images a COCO file lists (id = the COCO image id, so results import against that dataset).

    Every file is confined (`segpipe.paths`): a COCO ``file_name`` that is absolute or climbs with
    ``..`` is refused, and with a job's roots active, a file (or a symlink) resolving outside them too."""
    from segpipe.data.folders import list_images
    from segpipe.paths import check_read, confine_name

    root = check_read(images_dir, what="images")
    if not root.is_dir():
        raise ConfigError(f"{images_dir}: image folder not found")
    if annotations is None:
        items = []
        for path in list_images(root, recursive=True):
            name = path.relative_to(root).with_suffix("").as_posix()
            check_text(f"image {name[:80]}…", name, "image key")  # the key predictions are stored under
            items.append(ImageItem(check_read(path, what=f"image {name}"), name, name))
        if not items:
            raise ConfigError(f"{root}: no images found (looked for .jpg, .png, .tif, .bmp, .webp)")
        return items
    from segpipe.data.coco import load_coco

    coco = load_coco(annotations)
    items = []
    for info in (coco.imgs[i] for i in sorted(coco.imgs)):
        file_name = info["file_name"]
        path = confine_name(file_name, root, what=f"{annotations}: image {info['id']}: file_name")
        items.append(ImageItem(path, int(info["id"]), Path(file_name).with_suffix("").as_posix()))
    return items
