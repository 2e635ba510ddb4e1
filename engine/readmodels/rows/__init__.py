"""Each read model's views as table rows, and back: the one translation the projector runner and the
rebuild share, so the live tables and a rebuild cannot drift apart.

A read model (`ReadModel`) names its pure fold (engine/projections/), the tables its views live in and
the owner columns that name one view in each of them. `to_rows(view)` gives every row of a view;
`from_rows(key, rows)` gives the view back, so the runner can resume from the tables after a restart
instead of replaying the log. Rows are canonical: sets are stored sorted and mappings keep the
order the fold gave them (`ordinal`), so the same view always gives the same rows.

Not persisted, on purpose: a notification inbox's `subscriptions` (the filters of connections that
exist only while a socket is open; the live path keeps them in memory) and the `cells`/`sheets`
tables, which the log writer keeps inline in the append statement (engine/log/writer.py).

Pure: no I/O here; engine/readmodels/tables.py runs the SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from engine.model.events import RecordedEvent
from engine.model.streams import is_engine_stream
from engine.readmodels.rows.base import ReadModel, Routed, Row, Rows, TableSpec, Views
from engine.readmodels.rows.room_models import ROOMS_MODEL, TYPING_MODEL
from engine.readmodels.rows.user_models import (
    AI_REQUESTS_MODEL,
    DECLARED_STATUSES_MODEL,
    NOTIFICATIONS_MODEL,
    UPLOADS_MODEL,
)

MODELS: tuple[ReadModel, ...] = (
    ROOMS_MODEL,
    DECLARED_STATUSES_MODEL,
    TYPING_MODEL,
    NOTIFICATIONS_MODEL,
    UPLOADS_MODEL,
    AI_REQUESTS_MODEL,
)
TABLES: tuple[TableSpec, ...] = tuple(table for model in MODELS for table in model.tables)


def route(models: Sequence[ReadModel], events: Iterable[RecordedEvent]) -> Routed:
    """Each model's events grouped by the view they change, in log order.

    Only room and user streams (and their volatile twins) hold events of the catalogue; a stream of
    any other kind (tools and tests write some) feeds no read model. Within those streams a type no
    projection knows raises UnknownEvent: folding past it would leave a view silently wrong.
    """
    routed: Routed = {model.name: defaultdict(list) for model in models}
    for event in events:
        if not is_engine_stream(event.stream_id):
            continue
        for model in models:
            key = model.key_of(event)
            if key is not None:
                routed[model.name][key].append(event)
    return routed


def rows_of(model: ReadModel, views: Iterable[Any]) -> Rows:
    """Every row of `views`, per table of the model (each table present, maybe empty)."""
    rows: Rows = {table.name: [] for table in model.tables}
    for view in views:
        for table_name, table_rows in model.to_rows(view).items():
            rows[table_name].extend(table_rows)
    return rows


def fold_routed(models: Sequence[ReadModel], routed: Routed, views: Views) -> dict[str, set[Any]]:
    """Fold routed events into `views` (updated in place: a missing view starts empty); the keys changed."""
    changed: dict[str, set[Any]] = {model.name: set() for model in models}
    for model in models:
        model_views = views.setdefault(model.name, {})
        for key, keyed in routed[model.name].items():
            model_views[key] = model.fold(model_views.get(key), key, keyed)
            changed[model.name].add(key)
    return changed


def fold_all(
    models: Sequence[ReadModel], events: Sequence[RecordedEvent], views: Views
) -> dict[str, set[Any]]:
    """`route` then `fold_routed`."""
    return fold_routed(models, route(models, events), views)


__all__ = [
    "MODELS",
    "TABLES",
    "ReadModel",
    "Routed",
    "Row",
    "Rows",
    "TableSpec",
    "Views",
    "fold_all",
    "fold_routed",
    "route",
    "rows_of",
]
