"""Another data plane's flood of rate-limit events, for the control plane alone (bench/events.py).

    python bench/other_dp.py TARGET CERT KEY RATE DURATION

Connects to the control plane at TARGET over the cluster link (real gRPC over real mTLS, as a
scripted peer: tests/cluster_peer.py) and waits for commands on stdin, one per line:

  flood   send RATE events/s (for up to DURATION seconds and a little more) as a data plane
          flooding at that rate sends them: a batch of RATE x FLOOD_LINGER events every
          FLOOD_LINGER seconds, at most IN_FLIGHT batches awaiting their EventAck, the events
          as one JSON array (the same code, dp.cluster_client._event_batch): the control plane
          stores the same batches as in the bench's flooded runs
  stop    stop flooding, wait until every event sent is acknowledged, print
          "<events sent> <of those, acknowledged before the stop> <boot id>"

A run's batches are encoded before it starts (and their events are timestamped then), so
during a run this process only writes them and reads the acks: its own CPU, a small share of a
core that bench/events.py measures and prints, is all it adds to the machine beside the
control plane's and PostgreSQL's work.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dp.cluster_client import FLOOD_LINGER, IN_FLIGHT, _event_batch  # noqa: E402
from dp.events import Event  # noqa: E402
from shared.proto_gen import cluster_pb2 as pb  # noqa: E402
from shared.tls import ClusterTLS  # noqa: E402
from tests.cluster_peer import Peer  # noqa: E402

PAYLOAD = {"consumer": {"id": "9a6a3c8e-0000-4000-8000-000000000002"}, "ip": "10.1.2.3",
           "service": {"id": "5f1b4c4e-0000-4000-8000-000000000001"}, "rate": 11,
           "limit": 10, "window": "second"}


class Flood:
    def __init__(self, peer: Peer, rate: float, duration: float) -> None:
        self.peer = peer
        self.size = round(rate * FLOOD_LINGER)  # events per batch
        self.count = int(duration / FLOOD_LINGER) + 10  # batches a run may send
        self.boot_id = str(uuid.uuid4())
        self.ready: list[pb.DataPlaneMessage] = []  # the next run's batches, encoded
        self.sent = 0  # the last sequence number sent
        self.acked = 0  # the highest sequence number acknowledged
        self.acks = asyncio.Event()

    def prepare(self) -> None:
        """Encode the next run's batches before it starts: during the run, sending them is all
        this process does."""
        now, first = time.time(), self.sent + 1
        self.ready = [_event_batch(self.boot_id, [
            Event("rate-limiting-advanced", "rate-limit-exceeded", PAYLOAD, now, seq)
            for seq in range(start, start + self.size)])
            for start in range(first, first + self.count * self.size, self.size)]

    async def read_acks(self) -> None:
        while True:
            msg = await self.peer.recv(timeout=3600)
            if msg.WhichOneof("kind") == "event_ack":
                self.acked = max(self.acked, msg.event_ack.up_to_seq)
                self.acks.set()

    async def run(self, stop: asyncio.Event) -> None:
        in_flight: list[int] = []  # the last seq of each batch not yet acknowledged
        next_at = time.monotonic()
        for msg in self.ready:
            next_at += FLOOD_LINGER  # a batch holds the events of the linger before it
            await asyncio.sleep(max(next_at - time.monotonic(), 0))
            if stop.is_set():
                return
            in_flight = [s for s in in_flight if s > self.acked]
            while len(in_flight) >= IN_FLIGHT:
                self.acks.clear()
                await self.acks.wait()
                in_flight = [s for s in in_flight if s > self.acked]
            await self.peer.call.write(msg)
            self.sent = msg.event_batch.first_seq + self.size - 1
            in_flight.append(self.sent)
        raise SystemExit("the run outlasted the batches prepared for it")

    async def all_acked(self) -> None:
        while self.acked < self.sent:
            self.acks.clear()
            await self.acks.wait()


async def main(target: str, cert: str, key: str, rate: float, duration: float) -> None:
    tls = ClusterTLS.from_files("shared", cert, key)
    peer = await Peer(target, tls, f"other-dp-{uuid.uuid4()}").connect(plugins=[])
    flood = Flood(peer, rate, duration)
    flood.prepare()
    reader = asyncio.create_task(flood.read_acks())
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if line == "flood":
            first, stop = flood.sent, asyncio.Event()
            task = asyncio.create_task(flood.run(stop))
        elif line == "stop":
            acked = flood.acked
            stop.set()
            await task
            await flood.all_acked()
            flood.prepare()
            print(flood.sent - first, acked - first, flood.boot_id, flush=True)
    reader.cancel()
    await peer.close()


if __name__ == "__main__":
    import uvloop

    target, cert, key, rate, duration = sys.argv[1:6]
    uvloop.run(main(target, cert, key, float(rate), float(duration)))
