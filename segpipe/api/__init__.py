"""The HTTP API (FastAPI): `segpipe.api.app.create_app`."""
