"""What every read model's rows are made of: `TableSpec` (a table's columns and key), `ReadModel` (a
pure fold and its tables), and the conversions the models share."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.model.events import RecordedEvent
from engine.projections import frozen

Row = dict[str, Any]
Rows = dict[str, list[Row]]  # table name -> rows
Routed = dict[str, dict[Any, list[RecordedEvent]]]  # model name -> view key -> its events, in log order
Views = dict[str, dict[Any, Any]]  # model name -> view key -> view

TS = "timestamptz"


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, PostgreSQL type), in the table's order
    key: tuple[str, ...]  # the primary key

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


@dataclass(frozen=True, slots=True)
class ReadModel:
    """A pure fold and the tables its views are kept in."""

    name: str
    tables: tuple[TableSpec, ...]
    owner: tuple[str, ...]  # the columns that name one view, in every table of the model
    key_of: Callable[[RecordedEvent], Hashable | None]
    fold: Callable[[Any, Any, Sequence[RecordedEvent]], Any]  # (view or None, key, events) -> view
    to_rows: Callable[[Any], Rows]
    from_rows: Callable[[Any, Rows], Any]

    def owner_values(self, key: Any) -> tuple[Any, ...]:
        return key if isinstance(key, tuple) else (key,)

    def key_from(self, row: Row) -> Any:
        values = tuple(row[column] for column in self.owner)
        return values if len(values) > 1 else values[0]


def sorted_rows(rows: list[Row]) -> list[Row]:
    """Rows in the order the view had them (`ordinal`)."""
    return sorted(rows, key=lambda row: row.get("ordinal", 0))


def plain(mapping: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if mapping is None else dict(mapping)


def frozen_or_none(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None else frozen(dict(value))


__all__ = [
    "TS",
    "ReadModel",
    "Routed",
    "Row",
    "Rows",
    "TableSpec",
    "Views",
    "frozen_or_none",
    "plain",
    "sorted_rows",
]
