"""A database error, as a reason a person can act on: which value of which column did not fit.

SQLAlchemy's own message is the driver's text, the whole statement, its parameters and
"(Background on this error at: https://sqlalche.me/…)". PostgreSQL's "value too long for type
character varying(255)" does not say which column. `explain` finds the table in the statement and
compares each bound value against the store's column lengths (`segpipe.stores.models`), so a job
fails with "predictions.category_name: a value of 300 characters … does not fit (at most 255)".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy.exc import DBAPIError, StatementError

_TABLE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE)\s+\"?(\w+)\"?", re.IGNORECASE)


def explain(exc: BaseException) -> str:
    """One line for a database error (no statement, no parameters, no "Background on this error")."""
    if not isinstance(exc, StatementError):
        return f"{type(exc).__name__}: {exc}"
    too_long = list(_too_long(exc))
    if too_long:
        return "the database cannot hold " + "; ".join(too_long)
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    first = (str(orig) if orig is not None else str(exc)).strip().splitlines()
    kind = type(orig).__name__ if orig is not None else type(exc).__name__
    return f"the database refused the write ({kind}: {first[0] if first else 'no reason given'})"


def _too_long(exc: StatementError) -> Iterator[str]:
    from segpipe.stores.models import Base

    match = _TABLE.match(exc.statement or "")
    table = Base.metadata.tables.get(match.group(1)) if match else None
    if table is None:
        return
    rows = exc.params if isinstance(exc.params, (list, tuple)) else [exc.params]
    seen = set()
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        for key, value in row.items():
            column = table.c.get(_column_name(key, table))
            length = getattr(getattr(column, "type", None), "length", None)
            if column is None or not isinstance(value, str) or length is None or len(value) <= length:
                continue
            if column.name not in seen:
                seen.add(column.name)
                yield (f"{table.name}.{column.name}: a value of {len(value)} characters ({_preview(value)}) does not "
                       f"fit (at most {length})")


def _column_name(key: str, table: Any) -> str:
    """Bound parameter names are the column names, with a ``_m0``-style suffix in multi-row inserts."""
    if key in table.c:
        return key
    return re.sub(r"_m\d+$|_\d+$", "", key)


def _preview(value: str, keep: int = 40) -> str:
    return repr(value if len(value) <= keep else value[:keep] + "…")
