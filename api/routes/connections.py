"""`GET /api/v1/ws/connections` (admin): the WebSocket connections open on this node, with who holds
each and which rooms it is in, so the console can show them and `DELETE /ws/connections/{id}` them.

Read from the node's own registry (engine/features/connections.py): it lists this node only, and
`node_id` says which node answered. `DELETE` acts through any node: one that does not hold the
connection asks its peers.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import EngineDep
from api.rest_auth import AdminDep

router = APIRouter(tags=["management"])


class ConnectionOut(BaseModel):
    connection_id: str = Field(description="the `connection_id` of the `connected` greeting")
    user_id: str
    username: str
    roles: list[str]
    rooms: list[str] = Field(description="rooms joined, or being joined, by this connection")


class ConnectionList(BaseModel):
    node_id: str = Field(description="the node that answered; connections of other nodes are not listed")
    connections: list[ConnectionOut]


@router.get("/ws/connections", response_model=ConnectionList)
async def list_connections(engine: EngineDep, _: AdminDep) -> ConnectionList:
    """This node's open connections, by user and connection id."""
    listed = [
        ConnectionOut(
            connection_id=c.connection_id,
            user_id=c.actor.user_id,
            username=c.actor.username,
            roles=list(c.actor.roles),
            rooms=c.departures,
        )
        for c in engine.node.connections
    ]
    listed.sort(key=lambda c: (c.user_id, c.connection_id))
    return ConnectionList(node_id=engine.node_id, connections=listed)
