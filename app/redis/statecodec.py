"""Dataclasses to JSON and back, for the ingest state a new leader adopts (no pickle: Redis content is
never executed). Only the classes listed may be rebuilt; a field a newer version added is ignored and a
field it dropped takes its default, so leaders of two versions can hand over during a rolling deploy."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import orjson

CLASS_FIELD = "~"


class StateCodec:
    def __init__(self, classes: Iterable[type]):
        self._classes = {cls.__name__: cls for cls in classes}
        self._fields = {name: tuple(f.name for f in dataclasses.fields(cls) if f.init)
                        for name, cls in self._classes.items()}

    def dumps(self, value: Any) -> bytes:
        return orjson.dumps(self._plain(value))

    def loads(self, raw: bytes) -> Any:
        return self._rebuild(orjson.loads(raw))

    def _plain(self, value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            name = type(value).__name__
            if name not in self._classes:
                raise TypeError(f"{name} is not a shareable state class")
            plain = {CLASS_FIELD: name}
            for field_name in self._fields[name]:
                plain[field_name] = self._plain(getattr(value, field_name))
            return plain
        if isinstance(value, dict):
            return {str(k): self._plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._plain(v) for v in value]
        return value

    def _rebuild(self, value: Any) -> Any:
        if isinstance(value, dict):
            name = value.get(CLASS_FIELD)
            if isinstance(name, str):
                cls = self._classes.get(name)
                if cls is None:
                    raise ValueError(f"unknown state class {name!r}")
                known = set(self._fields[name])
                return cls(**{k: self._rebuild(v) for k, v in value.items() if k in known})
            return {k: self._rebuild(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._rebuild(v) for v in value]
        return value
