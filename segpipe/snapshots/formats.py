"""The snapshot source formats: one registered reader each, found by name (``segpipe data pull``, the API)."""

from __future__ import annotations

from collections.abc import Callable

from segpipe.registry import Registry
from segpipe.snapshots import cvat
from segpipe.snapshots.archive import Archive
from segpipe.snapshots.draft import Draft

Reader = Callable[[Archive], Draft]

SNAPSHOT_FORMATS: Registry[Reader] = Registry("snapshot source format")
SNAPSHOT_FORMATS.add("cvat-coco", cvat.read_coco, description="CVAT export \"COCO 1.0\" (zip, with images)")
SNAPSHOT_FORMATS.add("cvat-mask", cvat.read_masks,
                     description="CVAT export \"Segmentation mask 1.1\" (zip, with images)")
SNAPSHOT_FORMATS.add("cvat-images", cvat.read_cvat_images,
                     description="CVAT export \"CVAT for images 1.1\" (zip, with images)")
