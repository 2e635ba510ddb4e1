"""The event log on PostgreSQL, the truth everything else is derived from: its schema and migrations,
the store that reads it, the writer and group-commit appender that append to it, and the embedded
server used when no `DATABASE_URL` is given. Nothing here knows a connection, a room or a message."""
