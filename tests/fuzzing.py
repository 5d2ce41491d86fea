"""Damaged upstream payloads for the parser fuzz tests: arbitrary JSON grafted into real-shaped bodies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st


def json_values(interesting: Sequence[str]) -> st.SearchStrategy[Any]:
    """Any JSON value, with strings an upstream might really send (`interesting`) drawn often."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50)
        | st.sampled_from(list(interesting)),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=12,
    )


def mutate(draw: Callable[..., Any], node: Any, values: st.SearchStrategy[Any]) -> Any:
    """`node` with about one subtree in ten replaced by an arbitrary JSON value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    if isinstance(node, dict):
        return {key: mutate(draw, value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [mutate(draw, value, values) for value in node]
    return node
