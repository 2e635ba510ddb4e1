"""Numbers every client can hold exactly.

JavaScript represents integers exactly only up to 2**53 - 1, and every number the server sends (a
cell's version, a byte count, a seq) is read by JavaScript clients: an integer beyond it would arrive
rounded, and a cell at such a version could never be updated again.
"""

from __future__ import annotations

from typing import Final

MAX_SAFE_INTEGER: Final = 2**53 - 1

# PostgreSQL's bigint: the widest integer a REST query may carry (a log position, a cursor, an offset).
MAX_INT64: Final = 2**63 - 1

__all__ = ["MAX_INT64", "MAX_SAFE_INTEGER"]
