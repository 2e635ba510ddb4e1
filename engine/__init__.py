"""The collaboration engine: event log, appender, decisions and projections. Knows nothing of HTTP."""
