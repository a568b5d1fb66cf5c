from __future__ import annotations

import pytest
from hospital import Hospital


@pytest.fixture(scope="module")
async def hospital(tmp_path_factory):
    """North and south with every built service, started once for the module's scenarios; each
    scenario keeps to its own business keys (PO, invoice, lot, serial, case)."""
    site = await Hospital(tmp_path_factory.mktemp("hospital")).start()
    try:
        yield site
    finally:
        await site.stop()
