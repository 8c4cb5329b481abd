"""Every Redis key name car-dream uses, built in one place.

All keys of a namespace share the hash tag ``{ns}`` so a namespace lives in one
Redis Cluster slot and the Lua scripts may touch any of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidInputError, shown

__all__ = [
    "NAMESPACE_RE",
    "NODE_ID_RE",
    "Keys",
    "reports_channel_pattern",
    "validate_namespace",
    "validate_node_id",
]

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
# Ids travel inside key names: no braces (hash tags), no whitespace, bounded length.
NODE_ID_RE = re.compile(r"^[A-Za-z0-9_.:@/+=-]{1,200}\Z")

# Suffixes after the namespace prefix. The Lua scripts get the same table (as ``K``),
# so this module stays the only place key names are spelled.
SUFFIX = {
    "node": "node:",
    "deps": "deps:",
    "kind": "kind:",
    "expiry": "idx:expiry",
    "collectable": "idx:gc",
    "invalidate": "idx:invalidate",
    "unembedded": "idx:unembedded",
    "forget": "idx:forget",
    "meta": "meta",
    "cancel": "cancel",
    # Hash: insight subject (``tool:x``, ``source:y``, ``model:z``) -> current fact id.
    # Only the APPLY_INSIGHTS script reads and writes it.
    "insights": "insights",
    # Stream of every node a pass removed or superseded, and every restore (journal.py).
    "journal": "journal",
    # Hash: exact-duplicate key (kind, subject, normalised content) -> node id. Only the
    # merge step writes it (merge.lua); removing or rewriting a node drops its entry.
    "digests": "idx:digest",
    # Vector set (Redis 8): every live node embedded with the namespace's model, element =
    # node id, attributes {kind, s: subject tag} for the search filters (car_dream/search.py).
    "vectors": "idx:vectors",
}

REDBEAT_PREFIX = "car-dream:redbeat"
# The one key outside every namespace: the set of namespaces that have been written
# to, for the dispatcher. (On Redis Cluster it lives in a slot of its own.)
NAMESPACES_KEY = "car-dream:namespaces"
# What the exporter reads besides each namespace's own keys (see car_dream/totals.py):
# the totals of every namespace together (hash), for the series of the namespaces not
# shown one by one, and namespace -> time of its last report (sorted set), to pick those
# shown. Outside every namespace, like NAMESPACES_KEY.
METRICS_TOTALS_KEY = "car-dream:metrics:totals"
METRICS_RECENT_KEY = "car-dream:metrics:recent"
DREAM_ENTRY_NAME = "car-dream"


def reports_channel_pattern(db: int) -> str:
    """PSUBSCRIBE pattern matching the live report channel of every namespace in ``db``."""
    return f"car-dream:*:reports:live:db{int(db)}"


def validate_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_RE.match(namespace):
        raise InvalidInputError(
            f"invalid namespace {shown(namespace)}: use 1-64 letters, digits, '-', '_' or '.'"
        )
    return namespace


def validate_node_id(node_id: str) -> str:
    if not isinstance(node_id, str) or not NODE_ID_RE.match(node_id):
        raise InvalidInputError(
            f"invalid node id {shown(node_id)}: use 1-200 characters from "
            "letters, digits and _ . : @ / + = -"
        )
    return node_id


@dataclass(frozen=True)
class Keys:
    """Key names of one namespace: ``car-dream:{ns}:...``."""

    namespace: str

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)

    @property
    def prefix(self) -> str:
        return f"car-dream:{{{self.namespace}}}:"

    def node(self, node_id: str) -> str:
        """Hash with the node's fields and, once embedded, its vector."""
        return f"{self.prefix}{SUFFIX['node']}{node_id}"

    def dependents(self, node_id: str) -> str:
        """Set of conclusion ids that cite ``node_id`` as a premise."""
        return f"{self.prefix}{SUFFIX['deps']}{node_id}"

    def kind(self, kind: str) -> str:
        """Set of the ids of every node of one kind."""
        return f"{self.prefix}{SUFFIX['kind']}{kind}"

    @property
    def expiry(self) -> str:
        """Sorted set: prunable environment node id -> expires_at (epoch seconds)."""
        return self.prefix + SUFFIX["expiry"]

    @property
    def collectable(self) -> str:
        """Sorted set: superseded, unpinned node id -> superseded_at."""
        return self.prefix + SUFFIX["collectable"]

    @property
    def invalidate(self) -> str:
        """Set of conclusions whose premises changed and must be re-checked."""
        return self.prefix + SUFFIX["invalidate"]

    @property
    def forgettable(self) -> str:
        """Sorted set: live, unpinned fact id -> forgetting score (lowest goes first)."""
        return self.prefix + SUFFIX["forget"]

    @property
    def unembedded(self) -> str:
        """Set of node ids without an embedding for the current model."""
        return self.prefix + SUFFIX["unembedded"]

    @property
    def vectors(self) -> str:
        """Vector set (Redis 8 only): node id -> vector of every live embedded node."""
        return self.prefix + SUFFIX["vectors"]

    @property
    def meta(self) -> str:
        """Hash of namespace bookkeeping (embedding model, embedding version, the version
        of the profiles file last read)."""
        return self.prefix + SUFFIX["meta"]

    @property
    def digests(self) -> str:
        """Hash: exact-duplicate key of a node (merge step) -> its id."""
        return self.prefix + SUFFIX["digests"]

    @property
    def journal(self) -> str:
        """Stream: one entry per node a pass removed or superseded, and per restore."""
        return self.prefix + SUFFIX["journal"]

    @property
    def lock(self) -> str:
        return f"{self.prefix}lock"

    @property
    def paused(self) -> str:
        return f"{self.prefix}paused"

    @property
    def cancel(self) -> str:
        """Holds the token of the pass an operator asked to cancel."""
        return self.prefix + SUFFIX["cancel"]

    @property
    def reports(self) -> str:
        """Capped list of the last reports, newest first."""
        return f"{self.prefix}reports"

    @property
    def totals(self) -> str:
        """Hash of running totals over every report stored (see car_dream/totals.py)."""
        return f"{self.prefix}totals"

    def reports_channel(self, db: int) -> str:
        """Pub/sub channel on which every report is published as it is stored.

        Pub/sub ignores the database number, so the channel names it: a watcher of
        database 13 must not see the passes of a namespace in database 12.
        """
        return f"{self.prefix}reports:live:db{int(db)}"

    @property
    def traj_offsets(self) -> str:
        """Hash: trajectory file name -> byte offset already consumed."""
        return f"{self.prefix}traj:offsets"

    @property
    def traj_tools(self) -> str:
        """Hash: ``<tool>|success`` / ``<tool>|failure`` -> count."""
        return f"{self.prefix}traj:tools"

    @property
    def traj_sources(self) -> str:
        """Hash: ``<source>|<outcome>`` -> count."""
        return f"{self.prefix}traj:sources"

    @property
    def profile_digests(self) -> str:
        """Hash: model id -> digest of the profile last turned into a fact."""
        return f"{self.prefix}profiles"

    @property
    def insight_dirty(self) -> str:
        """Set of insight subjects whose counts changed but whose fact is not yet written."""
        return f"{self.prefix}insights:dirty"
