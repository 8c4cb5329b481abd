"""The store's and the pass's Lua scripts (``car_dream/lua/*.lua``), registered once per
client by :class:`Scripts`.

Every script receives the namespace key prefix as ``ARGV[1]`` and builds the other
key names of the namespace from it. All of them share the namespace hash tag, so
this is safe on Redis Cluster; ``KEYS[1]`` is always a key of the namespace so the
script is routed to the right node. The KEYS/ARGV/reply contract of each is at the
top of its file.

Destructive scripts are *fenced*: they first check that the namespace lock still
holds this pass's token (``fence`` in ``lib.lua``), and do nothing otherwise.

Each script is a generated prelude, then ``lib.lua`` (the shared helpers, among them
``node_indexes``: which indexes a node belongs in) and the other parts it needs
(:data:`PARTS`), then its own file. The prelude
carries what Python defines, so it stays spelled in one place: the key suffixes
(keys.py), the node kinds (writes.py) and the lock's value prefix (lock.py).
"""

from __future__ import annotations

import re
from typing import Any

from redis.commands.core import Script

from .keys import SUFFIX
from .lock import RUNNING
from .lua_files import lua
from .node import FORGET_HALF_LIFE_SECS, KINDS, VECTOR_QUANT
from .registry import PerClient

__all__ = ["Scripts"]


def _lua_string(value: str) -> str:
    # The generated names are plain: no quoting rules to get wrong.
    if not re.fullmatch(r"[\w:.-]*", value):
        raise ValueError(f"not a plain name for a Lua string: {value!r}")
    return f"'{value}'"


PRELUDE = (
    "local K = {" + ", ".join(f"{k} = {_lua_string(v)}" for k, v in SUFFIX.items()) + "}\n"
    "local KINDS = {" + ", ".join(map(_lua_string, KINDS)) + "}\n"
    f"local RUNNING = {_lua_string(RUNNING)}\n"
    f"local HALF_LIFE = {int(FORGET_HALF_LIFE_SECS)}\n"
    f"local VECTOR_QUANT = {_lua_string(VECTOR_QUANT)}\n"
)


# What each script is built from, before its own file: the prelude, then lib.lua (the
# shared helpers and the index rule), then write.lua or check.lua where needed. Every
# helper defined costs each call, so a script gets only these.
PARTS = {
    "ingest": ("lib", "write"),
    "prune": ("lib",),
    "invalidate": ("lib",),
    "collect": ("lib",),
    "store_vectors": ("lib",),
    "fetch_unembedded": (),  # a plain read
    "switch_model": ("lib",),
    "apply_insights": ("lib", "write"),
    "diagnose": ("lib", "check", "utf8"),
    "reindex": ("lib", "check"),
    "restore": ("lib", "check"),
    "touch": ("lib",),
    "forget": ("lib",),
    "merge": ("lib",),
    "search": (),  # reads only
    "scan_vectors": (),  # reads only
}

SOURCES = {
    name: PRELUDE + "".join(lua(part) for part in (*parts, name)) for name, parts in PARTS.items()
}


class Scripts(PerClient):
    """The scripts registered on one client: ``Scripts.of(client).prune(keys=..., args=...)``."""

    def __init__(self, client: Any) -> None:
        def script(name: str) -> Script:
            return client.register_script(SOURCES[name])

        self.ingest = script("ingest")
        self.prune = script("prune")
        self.invalidate = script("invalidate")
        self.collect = script("collect")
        self.store_vectors = script("store_vectors")
        self.fetch_unembedded = script("fetch_unembedded")
        self.switch_model = script("switch_model")
        self.apply_insights = script("apply_insights")
        self.diagnose = script("diagnose")
        self.reindex = script("reindex")
        self.restore = script("restore")
        self.touch = script("touch")
        self.forget = script("forget")
        self.merge = script("merge")
        self.search = script("search")
        self.scan_vectors = script("scan_vectors")
