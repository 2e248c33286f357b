"""The images of a predict job as ``(name relative to the images root, image id, output name)``.

Relative names, not paths: a shard runs on any worker, which finds the root on its own disk or in
its own cache. For an object-store root the parent lists the objects (nothing is downloaded but a
COCO file); each shard then downloads only its own images (`local_items`).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from segpipe.engine.predict import ImageItem, image_items
from segpipe.errors import ConfigError
from segpipe.jobs.specs import PredictSpec
from segpipe.storage.cache import DownloadCache
from segpipe.storage.uri import Uri, is_uri

Item = tuple[str, int | str, str]


def list_items(spec: PredictSpec, cache: DownloadCache) -> list[Item]:
    if not is_uri(spec.images):
        root = Path(spec.images).resolve()
        return [(_relative(it.path, root), it.image_id, it.name) for it in
                image_items(spec.images, _local(spec.annotations, cache))]
    from segpipe.data.folders import natural_key
    from segpipe.data.images import IMAGE_SUFFIXES
    from segpipe.paths import safe_name
    from segpipe.storage import remote

    images = Uri(spec.images)
    if spec.annotations is not None:
        from segpipe.data.coco import load_coco

        coco = load_coco(_local(spec.annotations, cache))
        return [(safe_name(info["file_name"], what=f"image {info['id']}: file_name").as_posix(), int(info["id"]),
                 PurePosixPath(info["file_name"]).with_suffix("").as_posix())
                for info in (coco.imgs[i] for i in sorted(coco.imgs))]
    names = sorted((rel for rel in remote.files_under(images)
                    if PurePosixPath(rel).suffix.lower() in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in PurePosixPath(rel).parts)), key=natural_key)
    if not names:
        raise ConfigError(f"{images}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return [(rel, str(PurePosixPath(rel).with_suffix("")), str(PurePosixPath(rel).with_suffix(""))) for rel in names]


def local_items(images: Path | Uri, items: list[Item], cache: DownloadCache) -> list[ImageItem]:
    """`ImageItem`s on this worker's disk: under a local root, or downloaded (these files only) from a URI."""
    from segpipe.paths import check_read, safe_name

    if is_uri(images):
        root = cache.folder(Uri(images), only=[rel for rel, _, _ in items])
    else:
        root = Path(images)
    return [ImageItem(check_read(root / safe_name(rel) if not Path(rel).is_absolute() else Path(rel),
                                 what=f"image {name}"), image_id, name) for rel, image_id, name in items]


def _local(path: Path | Uri | None, cache: DownloadCache) -> Path | None:
    return cache.file(Uri(path)) if is_uri(path) else path  # type: ignore[return-value]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # a symlink inside the root, resolved (and confined) elsewhere: keep its real path
        return str(path)
