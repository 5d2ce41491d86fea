import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

# Redis fixtures (redis_url, keys, redis, own_redis) for every test module; see tests/redis_support.py.
from tests.redis_support import keys, own_redis, redis, redis_url  # noqa: E402, F401

# The demo market's fixtures (srv: a seeded market that does not tick, client: HTTP to it); see tests/support.py.
from tests.support import client, srv  # noqa: E402, F401
