"""A resync of ITEM_COUNT items (default 3) of kind `item`; ocean-rs's built-in Port is its Port."""

import os
from typing import Any

from port_ocean.context.ocean import ocean


@ocean.on_resync("item")
async def resync_items(kind: str) -> list[dict[str, Any]]:
    count = int(os.environ.get("ITEM_COUNT", "3"))
    return [{"id": f"item-{i}", "name": f"Item {i}", "size": i * 10} for i in range(1, count + 1)]
