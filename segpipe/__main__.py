"""``python -m segpipe`` is the ``segpipe`` command."""

from segpipe.cli import app

app(prog_name="segpipe")
