"""Read models kept in PostgreSQL beside the log, and reads of the log itself: the projector runner and
the rows of each projection, their rebuild and its proof, room snapshots, history and time travel, and
the room listings. Every table here is derived: a rebuild from the log gives it back exactly."""
