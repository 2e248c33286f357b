"""Pretrained weights by name (``torchvision:…``, ``smp:…``): the catalogue lookup (`sources`) and the
copy every host shares in the artifact store (`store`). Imports no torch: the API and the CLI's
``segpipe weights list`` use it too."""

from segpipe.pretrained.sources import WEIGHT_SOURCES, RemoteWeights, is_named, lookup
from segpipe.pretrained.store import WeightStore, resolve_named

__all__ = ["WEIGHT_SOURCES", "RemoteWeights", "WeightStore", "is_named", "lookup", "resolve_named"]
