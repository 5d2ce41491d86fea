"""Views (CONTRACT §3) and REST pages (§4), one module per concern:

- `params`: parse and normalise view parameters (query string or WebSocket object), `QueryError`;
- `cache`: the byte-bounded `ViewCache` everything derived from a version is kept in;
- `index`: value columns, sorted indexes and filtered views of a version;
- `cursors`: signed cursors, `CURSOR_TTL_S`;
- `pages`: one page of a view (holding its version for a walk) and its §4 body.
"""

from app.query.cache import ViewCache
from app.query.cursors import CURSOR_TTL_S
from app.query.index import filtered, filtered_at, ordered
from app.query.pages import Page, page, page_parts
from app.query.params import KNOWN_PROTOCOLS, SORTS, VIEW_PARAMS, QueryError, View, parse_query, parse_view

__all__ = [
    "CURSOR_TTL_S",
    "KNOWN_PROTOCOLS",
    "Page",
    "QueryError",
    "SORTS",
    "VIEW_PARAMS",
    "View",
    "ViewCache",
    "filtered",
    "filtered_at",
    "ordered",
    "page",
    "page_parts",
    "parse_query",
    "parse_view",
]
