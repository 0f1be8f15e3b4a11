"""Starting the cluster listener: mTLS-only gRPC, the change feed, the data-plane registry."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc
from psycopg_pool import AsyncConnectionPool

from cp.cluster.dp_events import DataPlaneEvents
from cp.cluster.feed import ChangeFeed, load_state
from cp.cluster.registry import Registry
from cp.cluster.service import ClusterService
from cp.cluster.state import ClusterState
from shared.tls import ClusterTLS, PeerCheckInterceptor, server_credentials

log = logging.getLogger("tidegate.cluster")

# A dead data plane is noticed within keepalive time + timeout (30 s), well inside 45 s. The
# minimum ping interval we accept stays below the data plane's keepalive time (see dp/), or gRPC
# would answer its pings with GOAWAY "too_many_pings".
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]


@dataclass
class Cluster:
    state: ClusterState
    registry: Registry
    feed: ChangeFeed
    server: grpc.aio.Server
    port: int
    feed_task: asyncio.Task[None]
    events: DataPlaneEvents
    prune_task: asyncio.Task[None]

    async def stop(self, grace: float = 5.0) -> None:
        self.feed_task.cancel()
        self.prune_task.cancel()
        await self.server.stop(grace)


async def start_cluster(
    dsn: str, pool: AsyncConnectionPool, tls: ClusterTLS, listen: str, node_id: str,
    events: DataPlaneEvents | None = None,
) -> Cluster:
    """`events`: where data planes' events are stored (its retention, the hooks' retry period);
    default settings when not given."""
    state = await load_state(pool)
    registry = Registry(pool, node_id)
    feed = ChangeFeed(dsn, pool, state)
    events = events or DataPlaneEvents(pool)
    server = grpc.aio.server(interceptors=[PeerCheckInterceptor(tls)], options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((ClusterService(state, registry, events).handler(),))
    port = server.add_secure_port(listen, server_credentials(tls))
    if port == 0:
        raise OSError(f"cannot listen on {listen} for the cluster")
    await server.start()
    task = asyncio.create_task(feed.run(), name="change-feed")
    prune = asyncio.create_task(events.prune_forever(), name="dp-events-prune")
    log.info("cluster listener (mTLS gRPC, %s mode) on %s, config version %s", tls.mode,
             listen.rsplit(":", 1)[0] + f":{port}", state.version_string)
    return Cluster(state, registry, feed, server, port, task, events, prune)
