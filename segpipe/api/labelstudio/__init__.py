"""segpipe as a Label Studio ML backend (see `routes`): connect a project to ``<api>/ls/NAME@production/``."""

from segpipe.api.labelstudio.routes import router

__all__ = ["router"]
