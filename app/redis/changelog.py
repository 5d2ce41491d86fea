"""The committed versions in Redis: a stream of change sets after a base snapshot.

Layout (see `keys`): `meta` holds the epoch, the last committed seq, and the base's seq and header;
`log` is a stream whose entry `<seq>-0` holds change set `seq` as opaque bytes (the store's codec reads
them); `base` holds every record of version `base_seq`. A reader loads base + stream in one transaction
and replays the stream, so it holds every version still in the window; then it follows new entries.
Entry ids are the seqs, so "everything after seq n" is one XREAD, and a blocked XREAD wakes on the next
commit without pub/sub (which drops messages across a disconnect).

Every write is a Lua script, so each is atomic and checks the fencing token against the leader's lease:
a leader whose lease passed to another can never write. The stream is trimmed only by folding its oldest
entries into the base (`fold`), never by length, so no version still in the window is ever lost.

Epoch rules: the epoch lives in `meta`; `open` creates it when it is missing (first start, or Redis
flushed or replaced: history lost, so a new epoch) and otherwise returns the one there, so the epoch
survives restarts of every instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from app.redis.keys import Keys
from app.redis.lease import FENCE_CHECK

# KEYS: meta, log, base, holds. ARGV: epoch to create when missing. Returns the epoch in force.
_OPEN = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch then return epoch end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', 0, 'base_seq', 0, 'base_info', '')
return ARGV[1]
"""

# KEYS: meta, log, leader. ARGV: fence, epoch, seq, payload.
# Returns {1} or {0, reason, detail}: the lease is not this fence's, another epoch, or not the next seq.
_COMMIT = FENCE_CHECK.format(key=3) + """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if meta[1] ~= ARGV[2] then return {0, 'epoch', meta[1] or ''} end
if tonumber(ARGV[3]) ~= tonumber(meta[2]) + 1 then return {0, 'seq', meta[2]} end
redis.call('XADD', KEYS[2], ARGV[3] .. '-0', 'd', ARGV[4])
redis.call('HSET', KEYS[1], 'seq', ARGV[3])
return {1}
"""


def hash_patch(key: int, count: int) -> str:
    """Lua that writes n (field, value) pairs into the hash KEYS[key], then deletes the fields after them:
    ARGV[count] is n, the pairs follow, the fields to delete run to the end of ARGV (`patch_args` makes
    them). Folding the base and saving the ingest's state (app.redis.shared) both write a hash this way."""
    return f"""local n = tonumber(ARGV[{count}])
local i = {count + 1}
for _ = 1, n do
  redis.call('HSET', KEYS[{key}], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', KEYS[{key}], ARGV[i])
  i = i + 1
end"""


def patch_args(upserts: Mapping[str, bytes], removals: Iterable[str]) -> list[str | bytes | int]:
    """The ARGV tail `hash_patch` reads: how many upserts, the (field, value) pairs, the fields removed."""
    args: list[str | bytes | int] = [len(upserts)]
    for field, value in upserts.items():
        args.extend((field, value))
    args.extend(removals)
    return args


# KEYS: meta, log, base, leader, holds. ARGV: fence, epoch, from_base_seq, to_seq, base_info, then the
# `patch_args` of the base: n_upserts, n_upserts (address, record) pairs, the addresses removed.
# Moves the base from version from_base_seq to to_seq and trims the stream up to to_seq. Refused when a
# live cursor hold names a version before to_seq (that version must stay replayable).
_FOLD = FENCE_CHECK.format(key=4) + """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'base_seq')
if meta[1] ~= ARGV[2] then return {0, 'epoch', meta[1] or ''} end
if meta[3] ~= ARGV[3] then return {0, 'base', meta[3]} end
local to = tonumber(ARGV[4])
if to > tonumber(meta[2]) then return {0, 'seq', meta[2]} end
local now = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now[1] * 1000 + math.floor(now[2] / 1000))
for _, held in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  if tonumber(held) < to then return {0, 'held', held} end
end
""" + hash_patch(key=3, count=6) + """
redis.call('HSET', KEYS[1], 'base_seq', ARGV[4], 'base_info', ARGV[5])
redis.call('XTRIM', KEYS[2], 'MINID', (to + 1) .. '-0')
return {1}
"""

# KEYS: holds. ARGV: seq, seconds. A cursor hold until Redis time + seconds (never shortened).
_HOLD = """
local now = redis.call('TIME')
local hold_until = now[1] * 1000 + math.floor(now[2] / 1000) + math.floor(tonumber(ARGV[2]) * 1000)
redis.call('ZADD', KEYS[1], 'GT', hold_until, ARGV[1])
return hold_until
"""

# KEYS: holds. The live holds (seq, until ms), in Redis time.
_HOLDS = """
local now = redis.call('TIME')
return redis.call('ZRANGEBYSCORE', KEYS[1], now[1] * 1000 + math.floor(now[2] / 1000), '+inf')
"""


class CommitRejected(Exception):
    """Redis refused a write: `reason` is fence (not the lease holder), epoch, seq, base or held."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"commit refused: {reason} ({detail})" if detail else f"commit refused: {reason}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LogEntry:
    seq: int
    payload: bytes


@dataclass(frozen=True)
class LogHead:
    epoch: str | None  # None: no history at all (never started, or Redis flushed)
    seq: int
    base_seq: int


@dataclass(frozen=True)
class LogSnapshot:
    """Everything needed to rebuild every version in the window: the base and the entries after it."""

    epoch: str
    seq: int
    base_seq: int
    base_info: bytes  # the base version's header, as the store wrote it (empty for the empty seq 0)
    base: dict[str, bytes]  # address -> encoded record at base_seq
    entries: list[LogEntry]


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw: Iterable[tuple[bytes, Mapping[bytes, bytes]]]) -> list[LogEntry]:
    return [LogEntry(int(entry_id.split(b"-", 1)[0]), fields[b"d"]) for entry_id, fields in raw]


def raise_if_refused(result: list) -> None:
    """Reads a fenced script's answer: {1}, or {0, reason, detail} (FENCE_CHECK's, or the script's own)."""
    if int(result[0]) != 1:
        raise CommitRejected(_text(result[1]) or "", _text(result[2]) or "")


class ChangeLog:
    def __init__(self, redis: Redis, keys: Keys):
        self.redis = redis
        self.keys = keys
        self._open = redis.register_script(_OPEN)
        self._commit = redis.register_script(_COMMIT)
        self._fold = redis.register_script(_FOLD)
        self._hold = redis.register_script(_HOLD)
        self._holds = redis.register_script(_HOLDS)

    async def open(self, new_epoch: str) -> str:
        """The epoch in force, starting `new_epoch` (an empty history at seq 0) when there is none."""
        k = self.keys
        return _text(await self._open(keys=[k.meta, k.log, k.base, k.holds], args=[new_epoch])) or new_epoch

    async def head(self) -> LogHead:
        epoch, seq, base_seq = await self.redis.hmget(self.keys.meta, "epoch", "seq", "base_seq")
        return LogHead(_text(epoch), int(seq or 0), int(base_seq or 0))

    async def commit(self, fence: int, epoch: str, seq: int, payload: bytes) -> None:
        """Append change set `seq`; raises CommitRejected unless `fence` holds the lease and seq is next."""
        k = self.keys
        raise_if_refused(await self._commit(keys=[k.meta, k.log, k.leader], args=[fence, epoch, seq, payload]))

    async def load(self) -> LogSnapshot | None:
        """Base and stream read in one transaction (a fold cannot come between); None without an epoch."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(k.meta, "epoch", "seq", "base_seq", "base_info")
            pipe.hgetall(k.base)
            pipe.xrange(k.log, "-", "+")
            (epoch, seq, base_seq, base_info), base, raw = await pipe.execute()
        if epoch is None:
            return None
        base_seq = int(base_seq or 0)
        entries = [e for e in _entries(raw) if e.seq > base_seq]
        return LogSnapshot(_text(epoch) or "", int(seq or 0), base_seq, base_info or b"",
                           {_text(a) or "": v for a, v in base.items()}, entries)

    async def read(self, after_seq: int, block_ms: int | None = None, count: int | None = None) -> list[LogEntry]:
        """Entries after `after_seq`; with `block_ms`, waits up to that long for the next one."""
        if block_ms is None:
            return _entries(await self.redis.xrange(self.keys.log, f"{after_seq}-1", "+", count=count))
        answer = await self.redis.xread({self.keys.log: f"{after_seq}-0"}, count=count, block=block_ms)
        return _entries(answer[0][1]) if answer else []

    async def fold(self, fence: int, epoch: str, from_base_seq: int, to_seq: int, base_info: bytes,
                   upserts: Mapping[str, bytes], removals: Iterable[str]) -> None:
        """Move the base to version `to_seq`: `upserts` and `removals` are every record that differs
        between the two base versions. Raises CommitRejected when the lease, the base or a hold says no."""
        k = self.keys
        args: list[str | bytes | int] = [fence, epoch, from_base_seq, to_seq, base_info,
                                         *patch_args(upserts, removals)]
        raise_if_refused(await self._fold(keys=[k.meta, k.log, k.base, k.leader, k.holds], args=args))

    async def hold(self, seq: int, seconds: float) -> None:
        """A cursor on version `seq` for `seconds` more (Redis time): no fold may drop it before then."""
        await self._hold(keys=[self.keys.holds], args=[seq, seconds])

    async def held(self) -> set[int]:
        """The seqs live cursor holds name."""
        return {int(seq) for seq in await self._holds(keys=[self.keys.holds])}
