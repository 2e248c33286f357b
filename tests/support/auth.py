"""The tests' API tokens: one per role, with the headers a client sends."""

from __future__ import annotations

TOKENS = {"ann-token": "annotator", "eng-token": "engineer", "adm-token": "admin"}
ANNOTATOR = {"Authorization": "Bearer ann-token"}
ENGINEER = {"Authorization": "Bearer eng-token"}
ADMIN = {"Authorization": "Bearer adm-token"}


def tokens_variable(tokens: dict[str, str] = TOKENS) -> str:
    """``tokens`` as the ``SEGPIPE_TOKENS`` value of a server process (``token:role,…``)."""
    return ",".join(f"{token}:{role}" for token, role in tokens.items())
