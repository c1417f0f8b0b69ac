"""Signed, versioned policy bundles: what the central twin hands an edge to decide with.

A bundle is one JSON document (``twinkg-edge-bundle/1``)::

    {"format": ..., "manifest": {...}, "members": {name: text}, "signature": base64}

The members are the safety shapes (``shapes/<file>.ttl``, as installed centrally), the policies
the guard reads (``policies.ttl``: the action context of every rule's target, read from the
graph as the central guard reads it) and the local rules (``rules.json``). The manifest names
the site, a version (per site, monotonic), when it was made, the graph version of the policies
and the provenance chain's length and head when it was made, the shapes' version, the id of
the signing key and the SHA-256 of every member. The signature is Ed25519 over the manifest's
canonical JSON, so it covers every member through its hash.

An edge applies a bundle only when (in this order) it parses (``bundle_invalid``), its key is
trusted (``bundle_untrusted``), its signature and every member hash check out
(``bundle_forged``), its version is newer than the one in force (``bundle_stale``) and its
contents validate: the shapes parse and pass meta-SHACL with one version, the policies parse,
the rules parse and each stop's target is in the policies (``bundle_invalid``). It is written
aside, read back and validated from there, and only then made current by ``os.replace`` of the
``current`` pointer: until that rename the old bundle stays in force, and a crash leaves one or
the other, never half of each.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rdflib import OWL, RDF, Graph, URIRef

from twinkg.connect.edge.rules import Rule, RuleAction, parse_rules
from twinkg.connect.edge.signing import SigningKey, TrustStore
from twinkg.kg.chain_verify import CHAIN_HEAD
from twinkg.kg.context import action_context, graph_version
from twinkg.kg.provenance import CHAIN_IRI
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import (
    BundleForgedError,
    BundleInvalidError,
    BundleRefusedError,
    BundleStaleError,
    BundleUntrustedError,
    InvalidInputError,
    ShapesError,
)
from twinkg.reasoner.safety import SAFETY_SHAPES_DIR
from twinkg.shapes.meta import check_shapes

log = logging.getLogger("twinkg.edge")

FORMAT = "twinkg-edge-bundle/1"
SHAPES = "shapes/"
POLICIES = "policies.ttl"
RULES = "rules.json"
MAX_BUNDLE_BYTES = 32 * 1024 * 1024


def canonical(value: Any) -> bytes:
    """``value`` as canonical JSON bytes (sorted keys, no spaces): what hashes and signs."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    """The SHA-256 of ``data`` in hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Bundle:
    """A bundle as read: its manifest, members and signature (checked or not yet)."""

    manifest: Mapping[str, Any]
    members: Mapping[str, str]
    signature: bytes

    @property
    def version(self) -> int:
        """The bundle's version (monotonic per site)."""
        return int(self.manifest["version"])

    @property
    def site(self) -> str:
        """The site the bundle was made for."""
        return str(self.manifest["site"])

    def to_bytes(self) -> bytes:
        """The bundle file's bytes."""
        document = {
            "format": FORMAT,
            "manifest": dict(self.manifest),
            "members": dict(self.members),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Contents:
    """What a valid bundle holds, parsed: the shapes, the policies and the rules."""

    shapes: Graph
    shapes_version: str
    policies: Graph
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Applied:
    """The bundle in force: the bundle, the SHA-256 of its file and its parsed contents."""

    bundle: Bundle
    sha256: str
    contents: Contents


_MANIFEST_FIELDS = {
    "site": str,
    "version": int,
    "created": str,
    "graph_version": str,
    "chain_length": int,
    "chain_head": str,
    "shapes_version": str,
    "key_id": str,
    "members": dict,
}


def parse(data: bytes) -> Bundle:
    """A bundle from its file's bytes (:class:`BundleInvalidError` when it is not one)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleInvalidError(f"a bundle is at most {MAX_BUNDLE_BYTES} bytes")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleInvalidError(f"the bundle is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleInvalidError(f"the bundle is not a {FORMAT} document")
    manifest, members = document.get("manifest"), document.get("members")
    if not isinstance(manifest, dict) or not isinstance(members, dict):
        raise BundleInvalidError("the bundle has no manifest or no members")
    for name, kind in _MANIFEST_FIELDS.items():
        value = manifest.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BundleInvalidError(f"the manifest's {name!r} is not a {kind.__name__}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in members.items()):
        raise BundleInvalidError("the bundle's members are not texts by name")
    try:
        signature = base64.b64decode(str(document.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise BundleInvalidError("the bundle's signature is not base64") from None
    return Bundle(manifest, members, signature)


def verify(bundle: Bundle, trust: TrustStore) -> None:
    """Check the signing key is trusted, the signature and every member's hash."""
    key_id = str(bundle.manifest["key_id"])
    key = trust.keys().get(key_id)
    if key is None:
        raise BundleUntrustedError(f"the bundle is signed by key {key_id[:16]!r}, not trusted here")
    if not key.verifies(bundle.signature, canonical(dict(bundle.manifest))):
        raise BundleForgedError(f"the signature of bundle v{bundle.version} does not verify")
    listed = bundle.manifest["members"]
    if set(listed) != set(bundle.members):
        raise BundleForgedError("the bundle's members are not those its manifest lists")
    for name, text in bundle.members.items():
        if sha256(text.encode()) != listed[name]:
            raise BundleForgedError(f"member {name!r} does not match its hash in the manifest")


def _turtle(text: str, name: str) -> Graph:
    graph = Graph()
    try:
        graph.parse(data=text, format="turtle")
    except Exception as exc:  # rdflib raises several unrelated types for bad syntax
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleInvalidError(f"{name}: malformed Turtle: {reason}") from None
    return graph


def contents(bundle: Bundle) -> Contents:
    """The bundle's contents, validated (:class:`BundleInvalidError` naming the problem)."""
    names = sorted(n for n in bundle.members if n.startswith(SHAPES) and n.endswith(".ttl"))
    if not names:
        raise BundleInvalidError("the bundle holds no safety shapes")
    shapes = Graph()
    for name in names:
        shapes += _turtle(bundle.members[name], name)
    try:
        check_shapes(shapes)
    except ShapesError as exc:
        raise BundleInvalidError(f"the bundle's shapes: {exc}") from None
    versions = {
        str(v)
        for o in shapes.subjects(RDF.type, OWL.Ontology)
        for v in shapes.objects(o, OWL.versionInfo)
    }
    if len(versions) != 1:
        raise BundleInvalidError(
            f"the bundle's shapes declare versions {sorted(versions)}, not one"
        )
    policies = _turtle(bundle.members.get(POLICIES, ""), POLICIES)
    try:
        rules = parse_rules(json.loads(bundle.members.get(RULES, "")))
    except ValueError as exc:
        raise BundleInvalidError(f"{RULES} is not JSON: {exc}") from None
    except InvalidInputError as exc:
        raise BundleInvalidError(f"{RULES}: {exc}") from None
    for rule in rules:
        if (
            rule.action is RuleAction.CONTROLLED_STOP
            and (
                URIRef(rule.target),
                RDF.type,
                None,
            )
            not in policies
        ):
            raise BundleInvalidError(f"rule {rule.id}: its target is not in the bundle's policies")
    return Contents(shapes, versions.pop(), policies, rules)


def build(
    store: GraphStore,
    *,
    site: str,
    version: int,
    rules: Sequence[Rule],
    key: SigningKey,
    created: datetime | None = None,
    shapes_dir: Path = SAFETY_SHAPES_DIR,
) -> Bundle:
    """A bundle for ``site`` from the graph (policies), the installed shapes and ``rules``,
    signed with ``key`` (:class:`InvalidInputError` when a rule's target is not in the graph)."""
    policies = Graph()
    for rule in rules:
        policies += action_context(store, rule.target)
    members = {
        f"{SHAPES}{p.name}": p.read_text(encoding="utf-8") for p in sorted(shapes_dir.glob("*.ttl"))
    }
    members[POLICIES] = policies.serialize(format="turtle")
    members[RULES] = canonical({"rules": [r.as_json() for r in rules]}).decode()
    head = store.read(CHAIN_HEAD, chain=CHAIN_IRI)[0]
    shapes = Graph()
    for name, text in members.items():
        if name.startswith(SHAPES):
            shapes += _turtle(text, name)
    versions = sorted(
        str(v)
        for o in shapes.subjects(RDF.type, OWL.Ontology)
        for v in shapes.objects(o, OWL.versionInfo)
    )
    manifest = {
        "site": site,
        "version": version,
        "created": (created or datetime.now(UTC)).isoformat(timespec="seconds"),
        "graph_version": graph_version(policies),
        "chain_length": int(head["length"]),
        "chain_head": str(head["head"]),
        "shapes_version": versions[0] if versions else "",
        "key_id": key.public().key_id,
        "members": {name: sha256(text.encode()) for name, text in members.items()},
    }
    return Bundle(manifest, members, key.sign(canonical(manifest)))


def next_version(folder: Path, site: str) -> int:
    """The next bundle version for ``site``, one past the last made here (kept in
    ``folder/versions.json``), so versions only grow."""
    path = folder / "versions.json"
    try:
        versions = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        versions = {}
    version = int(versions.get(site, 0)) + 1
    versions[site] = version
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(versions, indent=1).encode())
    return version


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)  # atomic: the old file or the new one, never half
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class EdgeBundles:
    """The bundles of one edge under ``folder``: ``bundles/v<N>.json`` and the ``current``
    pointer (``{"version", "file", "sha256"}``)."""

    def __init__(self, folder: Path, trust: TrustStore, *, site: str | None = None) -> None:
        self.folder = folder
        self.trust = trust
        self.site = site
        self.pointer = folder / "current"

    def current(self) -> Applied | None:
        """The bundle in force (None before the first), checked again as it is read."""
        if not self.pointer.is_file():
            return None
        try:
            pointer = json.loads(self.pointer.read_text(encoding="utf-8"))
            data = (self.folder / "bundles" / str(pointer["file"])).read_bytes()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BundleInvalidError(f"the current bundle cannot be read: {exc}") from None
        if sha256(data) != pointer.get("sha256"):
            raise BundleForgedError("the current bundle's file no longer matches its pointer")
        bundle = parse(data)
        verify(bundle, self.trust)
        return Applied(bundle, sha256(data), contents(bundle))

    def apply(self, data: bytes) -> Applied:
        """Verify, write aside, validate and make current the bundle in ``data``; a refusal
        (:class:`BundleRefusedError` subclasses) is logged in one line and changes nothing."""
        try:
            return self._apply(data)
        except BundleRefusedError as exc:
            log.error("policy bundle refused (%s): %s", exc.code, " ".join(str(exc).split()))
            raise

    def _apply(self, data: bytes) -> Applied:
        bundle = parse(data)
        verify(bundle, self.trust)
        if self.site is not None and bundle.site != self.site:
            raise BundleInvalidError(f"the bundle is for site {bundle.site!r}, not {self.site!r}")
        in_force = self.current()
        if in_force is not None and bundle.version <= in_force.bundle.version:
            raise BundleStaleError(
                f"bundle v{bundle.version} is not newer than v{in_force.bundle.version} in force"
            )
        aside = self.folder / "bundles" / f"v{bundle.version}.json"
        aside.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(aside, data)
        written = parse(aside.read_bytes())  # validated as it will be read from now on
        verify(written, self.trust)
        applied = Applied(written, sha256(data), contents(written))
        pointer = {"version": bundle.version, "file": aside.name, "sha256": applied.sha256}
        _write_atomic(self.pointer, json.dumps(pointer).encode())
        log.info("policy bundle v%d applied (sha256 %s)", bundle.version, applied.sha256[:12])
        return applied
