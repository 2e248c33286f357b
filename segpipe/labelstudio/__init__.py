"""Talking to a Label Studio server: its tokens (`tokens`), its REST API (`client`) and wiring a
project to a segpipe model in one call (`connect`). The other direction — Label Studio calling segpipe
as its ML backend — lives in `segpipe.api.labelstudio`."""
