"""Fan-out: every new version to every channel, in slices that never hold the event loop for long.

`FanOut.publish(version, alerts)` takes a version and the alerts it raised (carried in its change set).
For each channel it computes the delta once (app.diff), encodes it once, frames it once per framing
(app.streams.transport; per subscription id where frames name it) and hands the same bytes to every
subscriber: written straight onto an idle subscriber's socket (app.streams.direct)
or appended to its connection's queue. The alerts of a version ride on the same path: a channel showing
the token gets the alert framed once, after its delta, in the same write.

Thousands of distinct views made one synchronous fan-out take over a second (200 connections x 20 views:
1,275 ms per version, `/health` p99 1.1 s). So the work is cut into slices of `SLICE_S`: after each, the
rest is continued from the event loop's queue, behind whatever requests arrived meanwhile. A version that
arrives during a pass restarts it: channels not yet reached go straight to the newest version (one delta
whose `prev_seq` is the version they were at, as for a slow subscriber), so nothing is skipped or doubled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import orjson
from prometheus_client import Histogram

from app import diff, query
from app.store.base import Version
from app.streams.channel import CATCH_UP, IDLE, LIVE, SNAPSHOT, SYNC, Channel
from app.streams.connection import ITEM_ALERT, ITEM_DELTA, ITEM_READY, ITEM_SYNC
from app.streams.frames import Alert
from app.streams.histogram import FastHistogram

log = logging.getLogger("app.streams")

SLICE_S = 0.004  # the longest the fan-out holds the event loop at a time


class Framed:
    """One channel's delta (and its alerts) in one framing, for one subscription id where frames name it:
    the frames, their bytes per direct writer key, and how many subscribers the fast path took them to."""

    __slots__ = ("name", "frames", "wires", "direct")

    def __init__(self, name: str, frames: tuple[bytes | str, ...]):
        self.name = name  # the framing's
        self.frames = frames
        self.wires: dict[Any, bytes] = {}
        self.direct = 0


class FanOut:
    def __init__(self, channels: dict[str, Channel], views: query.ViewCache, version: Version, *,
                 delivery: FastHistogram, duration: Histogram):
        self.channels = channels  # the hub's, by key: the channels to bring to each version
        self.views = views  # the process's view cache (app.query), shared with REST
        self.delivery = delivery  # commit -> hand-off to a client's socket
        self.duration = duration  # one pass, slices summed
        self.written_directly: Counter[str] = Counter()  # live deltas the fast path wrote, by framing name
        self.target = version  # the version every channel is being brought to
        self.todo: deque[Channel] = deque()
        self.alerts: list[Alert] = []  # of the versions this pass covers
        self.scheduled = False
        self.open = False  # a pass is under way (or done and not yet measured)
        self.spent = 0.0  # seconds of slices this pass has taken
        self.published_at: dict[int, float] = {}  # seq -> perf_counter() when its fan-out began

    def publish(self, version: Version, alerts: Sequence[dict[str, Any]]) -> None:
        """Bring every channel to `version`; `alerts` are the alerts this version raised."""
        now = time.perf_counter()
        self.published_at[version.seq] = now
        if len(self.published_at) > 64:
            for seq in sorted(self.published_at)[:-32]:
                del self.published_at[seq]
        if self.todo and version.epoch == self.target.epoch:
            self.alerts.extend(Alert.of(a) for a in alerts)  # the pass goes on, to the newer version
        else:
            self.alerts = [Alert.of(a) for a in alerts]
            self.spent = 0.0
        self.target = version
        self.todo = deque(self.channels.values())
        self.open = True
        self.run()

    def run(self) -> None:
        """Process channels for up to SLICE_S, then continue from the event loop (or at once without one)."""
        self.scheduled = False
        started = time.perf_counter()
        deadline = started + SLICE_S
        target, todo, channels = self.target, self.todo, self.channels
        while todo:
            channel = todo.popleft()
            if channel.version is target or channels.get(channel.key) is not channel:
                continue
            try:
                self.publish_channel(channel, target)
            except Exception:  # noqa: BLE001 - one bad view must not stop the others
                log.exception("stream fan-out failed for %s", channel.key)
            if todo and time.perf_counter() > deadline:
                self.spent += time.perf_counter() - started
                if self._continue_later():
                    return
                started = time.perf_counter()
                deadline = started + SLICE_S
        if self.open:
            self.open = False
            self.duration.observe(self.spent + time.perf_counter() - started)
        self.spent = 0.0
        self.alerts = []

    def _continue_later(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside an event loop (unit tests): finish now
            return False
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.run)
        return True

    # ---- one channel -------------------------------------------------------------------------------

    def publish_channel(self, channel: Channel, version: Version) -> None:
        old = channel.version
        rows = channel.rows_at(version, self.views)
        if old.epoch != version.epoch or old.seq >= version.seq:
            # A new history (or a restored one): every subscriber starts again from a snapshot.
            channel.advance(version, rows)
            for sub in channel.subs:
                sub.sync = SNAPSHOT
                if sub.state != SYNC:
                    sub.state = SYNC
                    sub.connection.enqueue((ITEM_SYNC, sub, None, 0, 0))
            return
        change = diff.delta(old, channel.rows, version, rows)
        channel.advance(version, rows)
        hits = self._alerts_in(rows, old.seq) if self.alerts else ()
        seq = version.seq
        if change is None:
            for sub in list(channel.subs):
                if sub.state == IDLE:
                    sub.delivered = seq  # the client's view is this version's too
                for alert in hits:
                    sub.connection.enqueue((ITEM_ALERT, sub, alert, alert.size, 0))
            return
        payload = orjson.dumps(change)
        tag = version.tag
        framed: dict[Any, Framed] = {}  # by framing (and subscription id where frames name it)
        for sub in list(channel.subs):
            state = sub.state
            connection = sub.connection
            if state != IDLE:
                if state == LIVE:  # its previous delta is still queued: switch to one merged catch-up
                    sub.state, sub.sync = SYNC, CATCH_UP
                    connection.enqueue((ITEM_SYNC, sub, None, 0, 0))
                for alert in hits:  # rendered when written, after the catch-up (or snapshot)
                    connection.enqueue((ITEM_ALERT, sub, alert, alert.size, 0))
                continue
            # IDLE: the delta and its alerts (their id: the version the client is at once the delta is
            # applied), framed once for every subscriber that shares the frames; written straight onto the
            # socket when the connection's writer is parked (the fast path, app.streams.direct), else queued.
            done = framed.get(sub.shares_frames_by)
            if done is None:
                framing = connection.framing
                made = (framing.event("delta", tag, sub.id, payload),
                        *(framing.alert(tag, sub.id, alert) for alert in hits))
                done = framed[sub.shares_frames_by] = Framed(framing.name, made)
            frames = done.frames
            writer = connection.direct_writer
            if writer is not None and connection.parked():
                wire = done.wires.get(writer.key)
                if wire is None:
                    wire = done.wires[writer.key] = writer.wire(frames)
                if writer.write(wire):
                    sub.delivered = seq
                    done.direct += 1
                    continue
            sub.state = LIVE
            connection.enqueue((ITEM_DELTA, sub, frames[0], len(frames[0]), seq))
            for frame in frames[1:]:
                connection.enqueue((ITEM_READY, sub, frame, len(frame), 0))
        direct = 0
        for done in framed.values():
            if done.direct:
                self.written_directly[done.name] += done.direct
                direct += done.direct
        if direct:
            elapsed = time.perf_counter() - self.published_at.get(seq, time.perf_counter())
            observe = self.delivery.observe
            for _ in range(direct):
                observe(elapsed)

    def _alerts_in(self, rows: list[str], after: int) -> list[Alert]:
        """The pass's alerts (of versions after `after`) for tokens among `rows`, in order."""
        shown = set(rows)
        return [alert for alert in self.alerts if alert.seq > after and alert.address in shown]
