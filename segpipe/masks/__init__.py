"""Masks out of the model and into files: encoding (COCO RLE, PNG, polygons, COCO results) in
``encode``, pictures (overlays, training curves, confusion matrices) in ``render``."""
