"""Read models as pure folds over the log: `apply(view, event) -> view`, one module per projection.

Projections import neither asyncio nor sqlalchemy, take time from the event and never from the clock,
and raise `UnknownEvent` on an event type they do not know. That makes the same code usable for the
live path, for "state as of seq N" by replay, and for rebuilding persisted tables from zero.
"""
