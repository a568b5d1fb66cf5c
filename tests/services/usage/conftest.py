from __future__ import annotations

import pytest
from helpers import new_site
from usage_world import usage_world


@pytest.fixture
async def usage(nats_server, tmp_path):
    async with usage_world(nats_server, tmp_path, new_site()) as world:
        yield world
