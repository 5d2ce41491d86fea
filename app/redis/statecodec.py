"""Dataclasses to JSON and back, for the ingest state a new leader adopts.

Written with orjson's own dataclass support (fast: the leader saves hundreds of token states a cycle) and
rebuilt from the root class's type hints, never from names in the data (no pickle: nothing read from
Redis is executed or picks a class). A field a newer version added is ignored and a field it dropped
takes its default, so leaders of two versions can hand over during a rolling deploy.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

import orjson

Builder = Callable[[Any], Any]


class StateCodec:
    def __init__(self, root: type):
        self.root = root
        self._builders: dict[Any, Builder] = {}

    def dumps(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def loads(self, raw: bytes) -> Any:
        """The root class rebuilt from `raw`; ValueError or TypeError when it is not of that shape."""
        return self._builder(self.root)(orjson.loads(raw))

    def _builder(self, kind: Any) -> Builder:
        """A function rebuilding `kind` from decoded JSON, made once per type (the hints are read once)."""
        builder = self._builders.get(kind)
        if builder is None:
            builder = self._builders[kind] = self._make(kind)
        return builder

    def _make(self, kind: Any) -> Builder:
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            hints = typing.get_type_hints(kind)
            fields = {f.name: self._builder(hints[f.name]) for f in dataclasses.fields(kind) if f.init}

            def build_dataclass(data: Any) -> Any:
                if data is None:
                    return None
                if not isinstance(data, dict):
                    raise TypeError(f"{kind.__name__} expects an object, not {type(data).__name__}")
                return kind(**{name: fields[name](value) for name, value in data.items() if name in fields})
            return build_dataclass
        origin = typing.get_origin(kind)
        if origin is dict:
            value = self._builder(typing.get_args(kind)[1])

            def build_dict(data: Any) -> Any:
                if data is None:
                    return None
                if not isinstance(data, dict):
                    raise TypeError(f"expected an object, not {type(data).__name__}")
                return {key: value(item) for key, item in data.items()}
            return build_dict
        if origin in (list, tuple):
            item = self._builder(typing.get_args(kind)[0])
            return lambda data: data if not isinstance(data, list) else origin(item(x) for x in data)
        if origin in (typing.Union, types.UnionType):
            for option in typing.get_args(kind):
                if option is not type(None) and (dataclasses.is_dataclass(option) or typing.get_origin(option)):
                    return self._builder(option)
        return _same


def _same(data: Any) -> Any:
    return data
