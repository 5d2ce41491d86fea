"""Every Redis key the service uses, derived from one prefix.

The prefix is wrapped in a hash tag (`{prefix}`) so every key lands in one slot: the Lua scripts touch
several keys at once, which Redis Cluster allows only within a slot. Tests give each case its own
prefix, so they never collide on a shared server.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "tokenstream"


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    def _key(self, name: str) -> str:
        return f"{{{self.prefix}}}:{name}"

    @property
    def meta(self) -> str:
        """Hash: epoch, seq (last committed), base_seq, base_info (the base version's header)."""
        return self._key("meta")

    @property
    def log(self) -> str:
        """Stream of change sets after the base; entry id `<seq>-0`."""
        return self._key("log")

    @property
    def base(self) -> str:
        """Hash: address -> encoded record, every record of version `base_seq`."""
        return self._key("base")

    @property
    def leader(self) -> str:
        """String with a TTL: the leader's fencing token (`<instance> <n>`); absent when nobody leads."""
        return self._key("leader")

    @property
    def fence(self) -> str:
        """Counter: the number in each new fencing token."""
        return self._key("fence")

    @property
    def holds(self) -> str:
        """Sorted set: seq -> time (ms) until which a cursor holds that version."""
        return self._key("holds")

    @property
    def secret(self) -> str:
        """The cursor signing secret, set once by whichever instance comes first."""
        return self._key("secret")

    @property
    def cycle(self) -> str:
        """The leader's latest cycle summary (JSON, with a TTL), what `/health` shows on every instance."""
        return self._key("cycle")

    @property
    def ingest(self) -> str:
        """Hash: the ingest's per-token state (address -> JSON) and `~scheduler` for the rest."""
        return self._key("ingest")

    def budget(self, group: str) -> str:
        """Sorted set: one member per request sent to an upstream group in the sliding window."""
        return self._key(f"budget:{group}")
