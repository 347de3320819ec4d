"""One poller for every viewer: status is measured once per interval, whatever the number of viewers,
and each snapshot is serialised once and handed to every connected event stream.

A viewer that cannot keep up is not waited for: its queue holds one snapshot, and a newer one
replaces an older one it has not taken yet (the page only needs the latest; the plots' points travel
with each snapshot and the history is fetched on (re)connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from truckctl.jsondoc import JsonObject

MAX_VIEWERS = 200  # event streams at once; more are refused (503) rather than slowing everyone down


@dataclass
class Hub:
    """Holds the latest snapshot and the viewers' queues; `run()` is the polling task."""

    poll: Callable[[], JsonObject]  # blocking (SSH probes, HTTP): run in a worker thread
    interval_s: float
    latest: JsonObject | None = None
    latest_event: bytes = b""
    polls: int = 0
    _viewers: set[asyncio.Queue[bytes]] = field(default_factory=set)
    _ready: asyncio.Event | None = None

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def ready(self) -> asyncio.Event:
        if self._ready is None:
            self._ready = asyncio.Event()
        return self._ready

    def publish(self, snapshot: JsonObject) -> None:
        self.latest = snapshot
        self.polls += 1
        self.latest_event = ("event: snapshot\ndata: " + json.dumps(snapshot, default=str, separators=(",", ":"))
                             + "\n\n").encode()
        for queue in self._viewers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(self.latest_event)
        self.ready().set()

    async def run(self) -> None:
        """Poll forever, one measure at a time, at most once per interval."""
        while True:
            started = time.monotonic()
            snapshot = await asyncio.to_thread(self.poll)
            self.publish(snapshot)
            await asyncio.sleep(max(0.05, self.interval_s - (time.monotonic() - started)))

    def subscribe(self) -> asyncio.Queue[bytes] | None:
        if len(self._viewers) >= MAX_VIEWERS:
            return None
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1)
        if self.latest_event:
            queue.put_nowait(self.latest_event)
        self._viewers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self._viewers.discard(queue)
