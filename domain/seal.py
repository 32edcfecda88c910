"""Signed seals over the whole store: what a ledger database's digest or Certificate
Transparency's signed tree head is to their logs. Pure: no I/O, no clock reads.

The per-case hash chain (``domain/chain.py``) has no secret: whoever can write the database
can recompute it after changing, adding or deleting events. A seal is a statement, signed
with an Ed25519 key kept outside the database, of what the store held at a global position:

``position``  the notification id sealed: the seal covers every event at or below it;
``events``    how many events are at or below ``position``;
``cases``     how many cases have one;
``heads_digest``  the digest (below) over every case's head at ``position``;
``previous``  the digest of the seal before it (``seq - 1``), so seals form a chain too;
``key``, ``fingerprint``  the public key (raw 32 bytes, base64) and ``SHA256:`` + base64 of
              its SHA-256, which an auditor pins.

A case's head at a position is its last event at or below it: ``version``, ``hash`` (the
chain hash) and ``trail``, a SHA-256 chain over where each of its events is, in store order
(``trail = sha256(trail || "<position> <version>\\n")`` per event, starting empty), so moving
an event to another position (reordering rows) changes the head like altering it does.

The heads digest is a two-level hash tree, cheap to keep up to date while walking the store
once in position order (only the buckets a new event touches are rehashed): each case's
leaf is the line ``"<case_id> <version> <hash> <trail hex>\\n"`` (case id in canonical UUID
form); a case belongs to bucket ``int(case_id[:3], 16)`` (4,096 buckets); a bucket's digest
is SHA-256 over its leaves sorted by case id (an empty bucket: SHA-256 of nothing); the
heads digest is SHA-256 over ``"caselog-heads/1\\n"`` followed by the 4,096 bucket digests
(32 raw bytes each, in bucket order).

A seal signs only this summary. To name the case (and version) that differs, every seal as
written carries, unsigned beside it, ``heads``: the heads of the cases whose head changed
after position ``heads_after`` (0: every case). Applying these lists in order rebuilds the
sealed heads; they are trusted only when they hash to the signed heads digest.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.chain import ChainBreak, ChainWalker

FORMAT = "caselog-seal/1"
BUCKETS = 16**3
ROOT_PREFIX = b"caselog-heads/1\n"
EMPTY_BUCKET = hashlib.sha256(b"").digest()


class SealInvalid(Exception):
    """A seal that is malformed or whose signature does not verify."""


def canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


# ---- keys and signatures ------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def public_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def fingerprint(raw_public: bytes) -> str:
    """``SHA256:`` and the base64 (unpadded) SHA-256 of the raw public key, as OpenSSH prints."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw_public).digest()).decode().rstrip("=")


def sign(body: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A signed seal: ``{"seal": body, "signature": base64 Ed25519 over canonical(body)}``."""
    return {"seal": body, "signature": b64(key.sign(canonical(body)))}


def seal_digest(signed: dict[str, Any]) -> str:
    """What the next seal's ``previous`` names: SHA-256 of the canonical seal body."""
    return hashlib.sha256(canonical(signed["seal"])).hexdigest()


REQUIRED = {
    "format": str,
    "deployment": str,
    "seq": int,
    "position": int,
    "events": int,
    "cases": int,
    "heads_digest": str,
    "sealed_at": str,
    "key": str,
    "fingerprint": str,
}


def check_signature(signed: Any) -> dict[str, Any]:
    """The seal body when ``signed`` is a well-formed seal whose signature verifies with the
    key it carries (pinning that key is the caller's business); else SealInvalid."""
    if (
        not isinstance(signed, dict)
        or not isinstance(signed.get("seal"), dict)
        or not isinstance(signed.get("signature"), str)
    ):
        raise SealInvalid('not a seal (expected {"seal": {...}, "signature": "..."})')
    body = signed["seal"]
    for name, kind in REQUIRED.items():
        if not isinstance(body.get(name), kind) or (kind is int and isinstance(body.get(name), bool)):
            raise SealInvalid(f"field {name!r} missing or not a {kind.__name__}")
    if body["format"] != FORMAT:
        raise SealInvalid(f"unknown format {body['format']!r}")
    try:
        raw = base64.b64decode(body["key"], validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw)
        signature = base64.b64decode(signed["signature"], validate=True)
    except ValueError as exc:
        raise SealInvalid(f"key or signature is not base64 Ed25519 ({exc})") from None
    if fingerprint(raw) != body["fingerprint"]:
        raise SealInvalid("the fingerprint is not that of the key it carries")
    try:
        public.verify(signature, canonical(body))
    except InvalidSignature:
        raise SealInvalid(f"signature does not verify with key {body['fingerprint']} (altered or forged)") from None
    return body


# ---- heads and their digest ---------------------------------------------------------------


def next_trail(trail: bytes, position: int, version: int) -> bytes:
    return hashlib.sha256(trail + b"%d %d\n" % (position, version)).digest()


def bucket_of(case_id: str) -> int:
    try:
        return int(case_id[:3], 16)
    except ValueError:  # not a UUID: still placed, deterministically
        return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:2], "big") % BUCKETS


@dataclass(slots=True)
class Head:
    version: int
    hash: str
    trail: bytes
    mark: int  # the position of its last event (or of the seal whose heads list brought it)
    line: bytes | None = None  # its leaf, once computed (None again when the head moves)

    def leaf(self, case_id: str) -> bytes:
        if self.line is None:
            self.line = b"%s %d %s %s\n" % (
                case_id.encode(),
                self.version,
                self.hash.encode(),
                self.trail.hex().encode(),
            )
        return self.line

    def entry(self, case_id: str) -> list:
        return [case_id, self.version, self.hash, self.trail.hex()]


class Heads:
    """Every case's head, kept up to date event by event (store order), with the heads digest."""

    def __init__(self) -> None:
        self._buckets: list[dict[str, Head]] = [{} for _ in range(BUCKETS)]
        self._digests = [EMPTY_BUCKET] * BUCKETS
        self._dirty: set[int] = set()
        self.events = 0
        self.cases = 0
        self.position = 0

    def get(self, case_id: str) -> Head | None:
        return self._buckets[bucket_of(case_id)].get(case_id)

    def record(self, position: int, case_id: str, version: int, event_hash: str) -> None:
        """The event at ``position`` (the next in store order) becomes its case's head."""
        b = bucket_of(case_id)
        bucket = self._buckets[b]
        head = bucket.get(case_id)
        if head is None:
            bucket[case_id] = Head(version, event_hash, next_trail(b"", position, version), position)
            self.cases += 1
        else:
            head.version, head.hash, head.trail, head.mark = (
                version,
                event_hash,
                next_trail(head.trail, position, version),
                position,
            )
            head.line = None
        self._dirty.add(b)
        self.events += 1
        self.position = position

    def put(self, entry: Any, mark: int) -> None:
        """A head from a seal's ``heads`` list: ``[case_id, version, hash, trail hex]``."""
        try:
            case_id, version, event_hash, trail = entry
            head = Head(int(version), str(event_hash), bytes.fromhex(trail), mark)
        except (TypeError, ValueError):
            raise SealInvalid(f"malformed heads entry {entry!r}") from None
        b = bucket_of(str(case_id))
        if str(case_id) not in self._buckets[b]:
            self.cases += 1
        self._buckets[b][str(case_id)] = head
        self._dirty.add(b)

    def digest(self) -> str:
        for b in self._dirty:
            bucket = self._buckets[b]
            self._digests[b] = (
                hashlib.sha256(b"".join(bucket[c].leaf(c) for c in sorted(bucket))).digest()
                if bucket
                else EMPTY_BUCKET
            )
        self._dirty.clear()
        return hashlib.sha256(ROOT_PREFIX + b"".join(self._digests)).hexdigest()

    def changed_after(self, position: int) -> list[list]:
        """The ``heads`` list of a seal written after one at ``position``: every case whose head
        moved past it, sorted by case id."""
        return [bucket[c].entry(c) for bucket in self._buckets for c in sorted(bucket) if bucket[c].mark > position]

    def differing(self, other: "Heads") -> Iterator[tuple[str, Head | None, Head | None]]:
        """(case id, this head, the other's head) for every case where the two differ."""
        self.digest(), other.digest()
        for b in range(BUCKETS):
            if self._digests[b] == other._digests[b]:
                continue
            mine, theirs = self._buckets[b], other._buckets[b]
            for case_id in sorted(mine.keys() | theirs.keys()):
                a, o = mine.get(case_id), theirs.get(case_id)
                if a is None or o is None or (a.version, a.hash, a.trail) != (o.version, o.hash, o.trail):
                    yield case_id, a, o


def new_seal(
    heads: Heads, *, deployment: str, seq: int, previous: str | None, sealed_at: str, key: Ed25519PrivateKey
) -> dict[str, Any]:
    """The signed seal of ``heads`` as they stand (at ``heads.position``)."""
    raw = public_raw(key)
    body = {
        "format": FORMAT,
        "deployment": deployment,
        "seq": seq,
        "position": heads.position,
        "events": heads.events,
        "cases": heads.cases,
        "heads_digest": heads.digest(),
        "previous": previous,
        "sealed_at": sealed_at,
        "key": b64(raw),
        "fingerprint": fingerprint(raw),
    }
    return sign(body, key)


# ---- checking a store against seals -------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """Something in the store that no seal or chain vouches for, naming the case."""

    case_id: str | None
    version: int | None
    text: str

    def __str__(self) -> str:
        where = (
            f"case {self.case_id}" + (f" version {self.version}" if self.version is not None else "") + ": "
            if self.case_id
            else ""
        )
        return where + self.text


def describe(
    case_id: str, store: Head | None, sealed: Head | None, seal: dict[str, Any], vouched: tuple[int, int] | None = None
) -> Finding:
    """What differs between the store's head and the sealed one; ``vouched``: (version, seal
    seq) of an earlier seal that matched the case, which narrows where an alteration is."""
    at = f"seal #{seal['seq']} (position {seal['position']})"
    if store is None:
        return Finding(
            case_id,
            1,
            f"deleted: {at} has it at version {sealed.version}, the store has no event of it at or below "
            f"position {seal['position']}",
        )
    if sealed is None:
        return Finding(
            case_id,
            1,
            f"added: not in {at}, yet the store has {store.version} event(s) of it at or below "
            f"position {seal['position']}",
        )
    if store.version < sealed.version:
        return Finding(
            case_id,
            store.version + 1,
            f"missing: {at} has it at version {sealed.version}, the store at version "
            f"{store.version} (events deleted or moved past the sealed position)",
        )
    if store.version > sealed.version:
        return Finding(
            case_id,
            sealed.version + 1,
            f"added: {at} has it at version {sealed.version}, the store at version "
            f"{store.version} at or below position {seal['position']}",
        )
    if store.hash != sealed.hash:
        if vouched is not None and vouched[0] < sealed.version:
            version, seq = vouched
            exact = version + 1 if version + 1 == sealed.version else None
            span = "" if exact else f" and at or before version {sealed.version}"
            return Finding(
                case_id,
                exact,
                f"altered after version {version} (seal #{seq} matched it there){span}: its head "
                f"hash differs from {at} (chain recomputed after a change)",
            )
        return Finding(
            case_id,
            None,
            f"altered at or before version {sealed.version}: its head hash differs from {at} "
            f"(chain recomputed after a change)",
        )
    return Finding(case_id, None, f"reordered: its events are at other positions than {at} recorded")


@dataclass
class _Chain:
    """Rebuilds the sealed heads from the ``heads`` lists of a sequence of seals, in position
    order; usable at a seal only when the rebuilt heads hash to that seal's signed digest."""

    seals: list[dict[str, Any]]
    heads: Heads = field(default_factory=Heads)
    at: int = 0
    next: int = 0
    broken: bool = False

    def at_seal(self, body: dict[str, Any]) -> Heads | None:
        while (
            not self.broken
            and self.next < len(self.seals)
            and self.seals[self.next]["seal"]["position"] <= body["position"]
        ):
            signed = self.seals[self.next]
            self.next += 1
            after, entries = signed.get("heads_after"), signed.get("heads")
            if not isinstance(entries, list) or after != self.at and after != 0:
                self.broken = True  # a gap: the lists before this one are not here
                break
            if after == 0:
                self.heads = Heads()
            try:
                for entry in entries:
                    self.heads.put(entry, signed["seal"]["position"])
            except SealInvalid:
                self.broken = True
                break
            self.at = signed["seal"]["position"]
        if self.broken or self.at != body["position"]:
            return None
        return self.heads if self.heads.digest() == body["heads_digest"] else None


class SealCheck:
    """Walks a store once, in position order, checking every case's chain and, at each seal's
    position, that the store's events at or below it are those the seal signed.

    ``seals`` are signed seals (with their unsigned ``heads`` lists when the source has them);
    ``trusted`` the fingerprints to accept (None: the key of the first valid seal, reported);
    ``more`` loaders of other sequences of seals whose ``heads`` lists can name cases (the
    store's own seals table, whose signatures are checked the same way), called only when
    the source's own lists cannot name them."""

    def __init__(
        self, seals: Iterable[Any], trusted: set[str] | None = None, more: Iterable[Callable[[], list[dict]]] = ()
    ):
        self.findings: list[Finding] = []
        self.walker = ChainWalker()
        self.store = Heads()
        self.trusted = set(trusted) if trusted else None
        self.key: str | None = None
        self.failed_seals: list[int] = []
        self.checked = 0
        self._named: set[str] = set()
        self._good: tuple[int, int] = (0, 0)  # (position, seq) of the last seal the store matched
        self._vouched: dict[str, tuple[int, int]] = {}  # case -> (version, seq): its head when a seal matched
        self.unsealed = 0  # events after the last seal checked
        self._sealed_events = 0
        self.seals = self._accept(seals)
        self._pending = list(self.seals)
        self._chains = [_Chain(self.seals)]
        self._more = list(more)

    def _accept(self, seals: Iterable[Any], report: bool = True) -> list[dict[str, Any]]:
        """The valid seals signed by a trusted key, in position order (``report``: the source's
        own seals, whose problems are findings; otherwise seals only used to name cases)."""
        good: dict[tuple[int, str], dict] = {}
        for n, signed in enumerate(seals, 1):
            try:
                body = check_signature(signed)
            except SealInvalid as exc:
                if report:
                    self.findings.append(Finding(None, None, f"seal {n} of the source is not valid: {exc}"))
                continue
            if self.trusted is None and report:
                self.trusted = {body["fingerprint"]}
            if body["fingerprint"] not in (self.trusted or ()):
                if report:
                    self.findings.append(
                        Finding(
                            None,
                            None,
                            f"seal #{body['seq']} is signed by key {body['fingerprint']}, "
                            f"not by a trusted one ({', '.join(sorted(self.trusted))})",
                        )
                    )
                continue
            if report:
                self.key = body["fingerprint"]
            good.setdefault((body["seq"], seal_digest(signed)), signed)
        ordered = sorted(good.values(), key=lambda s: (s["seal"]["position"], s["seal"]["seq"]))
        if report:
            self._check_links(ordered)
        return ordered

    def _check_links(self, ordered: list[dict]) -> None:
        by_seq: dict[int, dict] = {}
        for signed in ordered:
            seq = signed["seal"]["seq"]
            if seq in by_seq and seal_digest(by_seq[seq]) != seal_digest(signed):
                self.findings.append(Finding(None, None, f"two different seals #{seq}: the sealed history was forked"))
            by_seq.setdefault(seq, signed)
        for seq, signed in by_seq.items():
            before = by_seq.get(seq - 1)
            if before is not None and signed["seal"]["previous"] != seal_digest(before):
                self.findings.append(
                    Finding(None, None, f"seal #{seq} does not follow seal #{seq - 1} (its previous differs)")
                )
            if before is not None and (signed["seal"]["position"] < before["seal"]["position"]):
                self.findings.append(
                    Finding(None, None, f"seal #{seq} seals an earlier position than seal #{seq - 1}")
                )

    # ---- the walk -------------------------------------------------------------------------

    def feed(self, position: int, case_id: str, version: int, type_name: str, state: dict[str, Any]) -> None:
        while self._pending and position > self._pending[0]["seal"]["position"]:
            self._check(self._pending.pop(0)["seal"])
        try:
            self.walker.feed(case_id, version, type_name, state)
        except ChainBreak as exc:
            self._name(Finding(exc.case_id, exc.version, f"hash chain broken: {exc.reason}"))
            self.walker.accept(case_id, version, str(state.get("hash")))
        head = self.store.get(case_id)
        if head is not None and 0 < head.mark <= self._good[0]:
            self._vouched[case_id] = (head.version, self._good[1])
        self.store.record(position, case_id, version, str(state.get("hash")))

    def finish(self) -> list[Finding]:
        while self._pending:
            self._check(self._pending.pop(0)["seal"])
        self.unsealed = self.store.events - self._sealed_events
        return self.findings

    def _name(self, finding: Finding) -> None:
        if finding.case_id not in self._named:
            self._named.add(finding.case_id)
            self.findings.append(finding)

    def _check(self, body: dict[str, Any]) -> None:
        self.checked += 1
        self._sealed_events = self.store.events
        if (self.store.digest(), self.store.events) == (body["heads_digest"], body["events"]):
            self._good = (body["position"], body["seq"])
            return
        self.failed_seals.append(body["seq"])
        sealed = next((h for h in (chain.at_seal(body) for chain in self._chains) if h is not None), None)
        while sealed is None and self._more:
            self._chains.append(_Chain(self._accept(self._more.pop(0)(), report=False)))
            sealed = self._chains[-1].at_seal(body)
        if sealed is None:
            self.findings.append(
                Finding(
                    None,
                    None,
                    f"the store does not match seal #{body['seq']} (position {body['position']}: "
                    f"{body['events']} events sealed, {self.store.events} now); no heads list "
                    f"that hashes to the seal is at hand to name the case",
                )
            )
            return
        for case_id, store, seal in self.store.differing(sealed):
            vouched = self._vouched.get(case_id)
            if vouched is None and store is not None and 0 < store.mark <= self._good[0]:
                vouched = (store.version, self._good[1])
            self._name(describe(case_id, store, seal, body, vouched))
