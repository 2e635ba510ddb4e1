"""Several engine processes on one database: following what other nodes commit (LISTEN/NOTIFY, then
a read of the log), heartbeats and the reaping of dead nodes' connections, and rate limits shared
across nodes. Nodes share only PostgreSQL."""
