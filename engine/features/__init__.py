"""What the engine does for people, one component per concern: rooms and cells, presence and typing,
notifications, uploads and files, AI analysis, admin actions, statistics and rate limits. Each
component receives only the narrow interfaces it uses (commit an event, reply to a connection, read
a stream), so it can be driven in a test on the memory log with no database and no socket."""
