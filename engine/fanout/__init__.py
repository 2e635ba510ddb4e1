"""Delivery of committed events to this node's connections: the hub and its per-connection bounded
queues, the catch-up that joins a room without a gap, the order in which a node publishes what any
node committed, and the live views a publish renders from. Nothing here reads or writes the log
itself: readers are handed in."""
