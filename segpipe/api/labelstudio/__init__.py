"""segpipe as a Label Studio ML backend (see `routes`): connect a project to ``<api>/ls/NAME@production/``."""

from segpipe.api.labelstudio.connect_route import router as connect_router
from segpipe.api.labelstudio.routes import router

__all__ = ["connect_router", "router"]
