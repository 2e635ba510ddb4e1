"""Decisions, pure: whether a message may become events, judged against the state it would change.
They raise a `Rejected` (engine/model/errors.py) and read no clock and do no I/O, so one rule gives
the same answer wherever it runs: before a message is queued, or inside the append transaction."""
