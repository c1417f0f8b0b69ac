"""Leases on assets: two agent workers never decide on the same asset at once.

A worker takes an asset's lease before it runs the agents on that asset and gives it back
after. A lease is a node ``(:AssetLease {leaseOf, holder, expiresAt, recheck})`` (never
``:Resource``: coordination, not knowledge; never in the RDF projection or the change log). Each
statement first takes the node's write lock (``SET l.leaseOf = l.leaseOf``), so a second worker's
statement waits for the first's commit and then reads what it wrote: checking and taking the
lease is one atomic step.

* A lease held by another worker is not taken; the asking worker marks it ``recheck`` instead
  (it had work for that asset). The holder, when it gives the lease back, hears ``recheck`` and
  runs on the asset again, so work that arrived while the asset was busy is never dropped.
* A lease expires (``expiresAt``): a worker that died holding one blocks the asset for its
  time-to-live at most.
"""

from __future__ import annotations

from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.store import GraphStore
from twinkg.ontology.vocab import Label, PropKey, RelType

_LEASE = token(Label.ASSET_LEASE)
_OF, _HOLDER, _EXPIRES, _RECHECK = (
    token(k) for k in (PropKey.LEASE_OF, PropKey.HOLDER, PropKey.EXPIRES_AT, PropKey.RECHECK)
)

_LOCK = "SET l.`_LOCK_` = true REMOVE l.`_LOCK_` "
"""The lease's write lock before its holder is read: Neo4j's documented idiom, a property set and
removed. A no-op ``SET`` of the key takes the lock as well, but the chain head's statement of
that form returned what it had read before the lock (decision 0087), so neither uses it."""

ACQUIRE = NamedQuery(
    "leases.acquire",
    f"MERGE (l:{_LEASE} {{{_OF}: $asset}}) {_LOCK}"
    f"WITH l, (l.{_HOLDER} IS NULL OR l.{_HOLDER} = $holder "
    f"OR l.{_EXPIRES} < datetime.realtime()) AS free "
    f"SET l.{_HOLDER} = CASE WHEN free THEN $holder ELSE l.{_HOLDER} END, "
    f"l.{_EXPIRES} = CASE WHEN free "
    f"THEN datetime.realtime() + duration({{milliseconds: $ttl_ms}}) ELSE l.{_EXPIRES} END, "
    f"l.{_RECHECK} = CASE WHEN free THEN false ELSE true END "
    f"RETURN free AS acquired, l.{_HOLDER} AS holder",
)
"""Take the lease of ``$asset`` for ``$holder`` unless another live holder has it (then mark
it for a recheck)."""

RELEASE = NamedQuery(
    "leases.release",
    f"MATCH (l:{_LEASE} {{{_OF}: $asset}}) {_LOCK}"
    f"WITH l, l.{_HOLDER} = $holder AS mine, coalesce(l.{_RECHECK}, false) AS again "
    f"SET l.{_HOLDER} = CASE WHEN mine AND NOT again THEN null ELSE l.{_HOLDER} END, "
    f"l.{_EXPIRES} = CASE WHEN mine AND again "
    f"THEN datetime.realtime() + duration({{milliseconds: $ttl_ms}}) ELSE l.{_EXPIRES} END, "
    f"l.{_RECHECK} = CASE WHEN mine THEN false ELSE l.{_RECHECK} END "
    "RETURN mine AND again AS again",
)
"""Give the lease back, unless another worker asked for the asset meanwhile: then keep it (its
time renewed) and say ``again``."""

HOLDERS = NamedQuery(
    "leases.holders",
    f"MATCH (l:{_LEASE}) WHERE l.{_HOLDER} IS NOT NULL AND l.{_EXPIRES} >= datetime.realtime() "
    f"RETURN l.{_OF} AS asset, l.{_HOLDER} AS holder ORDER BY asset",
)
"""The live leases: which worker decides on which asset now."""


def acquire(store: GraphStore, asset: str, holder: str, *, ttl_s: float) -> bool:
    """Whether ``holder`` now holds ``asset``'s lease (False: another live holder has it)."""
    params = {"asset": asset, "holder": holder, "ttl_ms": int(ttl_s * 1000)}
    rows = store.execute([(ACQUIRE, params)], touches=())[0]
    return bool(rows[0]["acquired"])


def release(store: GraphStore, asset: str, holder: str, *, ttl_s: float) -> bool:
    """Give ``asset``'s lease back; True when another worker asked for the asset meanwhile,
    and the lease is kept (renewed) for ``holder`` to run on it again."""
    params = {"asset": asset, "holder": holder, "ttl_ms": int(ttl_s * 1000)}
    rows = store.execute([(RELEASE, params)], touches=())[0]
    return bool(rows and rows[0]["again"])


def holders(store: GraphStore) -> dict[str, str]:
    """Asset → the worker holding its lease, for the live leases."""
    return {row["asset"]: row["holder"] for row in store.read(HOLDERS)}


PARTS = NamedQuery(
    "leases.parts",
    f"MATCH (p:{token(Label.ASSET)})-[:{token(RelType.PART_OF)}*1..]->"
    f"(:{token(Label.RESOURCE)} {{uri: $asset}}) RETURN DISTINCT p.uri AS uri ORDER BY uri",
)
"""Every asset that is part of ``$asset``, at any depth: a run scoped to an asset may decide on
any of them, so a worker leases them all."""


def parts(store: GraphStore, asset: str) -> list[str]:
    """The assets that are part of ``asset`` (at any depth), in IRI order."""
    return [row["uri"] for row in store.read(PARTS, asset=asset)]
