"""Dataset snapshots: annotations that come back from the annotation tools (a CVAT export, a Label
Studio project), frozen as an immutable, content-hashed COCO dataset in the artifact store."""
