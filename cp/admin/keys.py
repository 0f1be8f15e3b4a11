"""What the Admin API application carries, as typed aiohttp keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from cp.store import Store

if TYPE_CHECKING:
    from cp.cluster.server import Cluster

STORE: web.AppKey[Store] = web.AppKey("store", Store)
SETTINGS: web.AppKey[dict[str, Any]] = web.AppKey("settings", dict)
CLUSTER: web.AppKey[Cluster] = web.AppKey("cluster")  # absent when the cluster listener is off
