"""Seals without a store: the heads digest as documented, signatures, keys and naming."""

from __future__ import annotations

import base64
import copy
import hashlib
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.chain import GENESIS, event_hash
from domain.seal import Heads, SealCheck, SealInvalid, check_signature, new_seal, seal_digest

KEY = Ed25519PrivateKey.generate()


def events(cases: int = 6, per_case: int = 3, seed: int = 1) -> list[tuple[int, str, int, str, dict]]:
    """(position, case id, version, type, stored state) with valid chains, cases interleaved."""
    ids = [str(uuid.UUID(int=seed * 1000 + n * 7919 + (n << 100))) for n in range(cases)]
    last = {c: GENESIS for c in ids}
    out, position = [], 0
    for version in range(1, per_case + 1):
        for case_id in ids:
            position += 1
            state = {
                "timestamp": f"2026-03-10T14:{position:02d}:00+00:00",
                "actor": {"kind": "provider", "id": "p"},
                "command": None,
                "prev_hash": last[case_id],
                "note": f"event {position}",
            }
            state["hash"] = last[case_id] = event_hash(
                case_id=case_id,
                version=version,
                type_name="CaseHeld",
                occurred_at=state["timestamp"],
                actor=state["actor"],
                command=None,
                prev_hash=state["prev_hash"],
                data={"note": state["note"]},
            )
            out.append((position, case_id, version, "CaseHeld", state))
    return out


def heads_of(rows) -> Heads:
    heads = Heads()
    for position, case_id, version, _, state in rows:
        heads.record(position, case_id, version, state["hash"])
    return heads


def sealed(rows, seq: int = 1, previous=None, key=KEY, after: int = 0, heads: Heads | None = None) -> dict:
    heads = heads or heads_of(rows)
    signed = new_seal(heads, deployment="test", seq=seq, previous=previous, sealed_at="2026-03-10T15:00:00Z", key=key)
    return {**signed, "heads_after": after, "heads": heads.changed_after(after)}


def run(rows, seals, trusted=None) -> SealCheck:
    check = SealCheck(seals, trusted)
    for row in rows:
        check.feed(*row[:3], row[3], row[4])
    check.finish()
    return check


def test_the_heads_digest_is_what_the_docstring_says():
    rows = events()
    buckets: dict[int, list[bytes]] = {}
    trails: dict[str, bytes] = {}
    last: dict[str, tuple[int, str]] = {}
    for position, case_id, version, _, state in rows:
        trails[case_id] = hashlib.sha256(trails.get(case_id, b"") + f"{position} {version}\n".encode()).digest()
        last[case_id] = (version, state["hash"])
    for case_id, (version, h) in last.items():
        buckets.setdefault(int(case_id[:3], 16), []).append(
            f"{case_id} {version} {h} {trails[case_id].hex()}\n".encode()
        )
    digests = [hashlib.sha256(b"".join(sorted(buckets.get(b, [])))).digest() for b in range(4096)]
    assert heads_of(rows).digest() == hashlib.sha256(b"caselog-heads/1\n" + b"".join(digests)).hexdigest()


def test_a_seal_verifies_and_any_change_to_it_does_not():
    seal = sealed(events())
    body = check_signature(seal)
    assert body["position"] == 18 and body["events"] == 18 and body["cases"] == 6
    assert body["fingerprint"].startswith("SHA256:")
    for field, value in (("events", 17), ("heads_digest", "0" * 64), ("position", 19)):
        forged = copy.deepcopy(seal)
        forged["seal"][field] = value
        with pytest.raises(SealInvalid, match="does not verify"):
            check_signature(forged)
    other = Ed25519PrivateKey.generate()
    swapped = copy.deepcopy(seal)
    swapped["seal"]["key"] = base64.b64encode(other.public_key().public_bytes_raw()).decode()
    with pytest.raises(SealInvalid, match="fingerprint"):
        check_signature(swapped)


def test_the_untouched_walk_matches_every_seal():
    rows = events()
    first = sealed(rows[:9])
    second = sealed(rows, seq=2, previous=seal_digest(first), after=9, heads=heads_of(rows))
    check = run(rows, [second, first])
    assert check.findings == [] and check.checked == 2 and check.key == first["seal"]["fingerprint"]


def test_a_seal_from_another_key_is_refused_when_the_key_is_pinned():
    rows = events()
    mallory = sealed(rows, key=Ed25519PrivateKey.generate())
    check = run(rows, [mallory], trusted={sealed(rows)["seal"]["fingerprint"]})
    assert len(check.findings) == 1 and "not by a trusted one" in str(check.findings[0])


def test_names_the_case_and_version_from_the_heads_lists():
    rows = events()
    seal = sealed(rows)
    victim = rows[-1][1]
    check = run(rows[:-1], [seal])
    assert [str(f) for f in check.findings] == [
        f"case {victim} version 3: missing: seal #1 (position 18) has it at version 3, "
        "the store at version 2 (events deleted or moved past the sealed position)"
    ]


def test_without_heads_lists_the_mismatch_is_still_reported():
    rows = events()
    seal = {k: v for k, v in sealed(rows).items() if k not in ("heads", "heads_after")}
    check = run(rows[:-1], [seal])
    assert len(check.findings) == 1 and "does not match seal #1" in str(check.findings[0])


def test_heads_lists_that_do_not_hash_to_the_seal_are_not_believed():
    rows = events()
    seal = sealed(rows)
    seal["heads"][0][1] = 99  # someone edited the list: it no longer hashes to the signed digest
    check = run(rows[:-1], [seal])
    assert "no heads list" in str(check.findings[0])


def test_a_forked_history_is_reported():
    rows = events()
    first = sealed(rows[:9])
    second = sealed(rows, seq=2, previous="0" * 64, after=9)
    check = run(rows, [first, second])
    assert any("does not follow seal #1" in str(f) for f in check.findings)


def test_an_earlier_seal_that_matched_narrows_an_alteration_to_the_version():
    rows = events()  # versions 1, 2, 3 of six cases at positions 1-6, 7-12, 13-18
    seals, previous = [], None
    for seq, upto in enumerate((6, 12, 18), 1):
        seals.append(
            sealed(rows[:upto], seq=seq, previous=previous, after=(0, 6, 12)[seq - 1], heads=heads_of(rows[:upto]))
        )
        previous = seal_digest(seals[-1])
    position, victim, version, kind, state = rows[14]
    forged = {**state, "note": "approved after all"}
    forged["hash"] = event_hash(
        case_id=victim,
        version=version,
        type_name=kind,
        occurred_at=state["timestamp"],
        actor=state["actor"],
        command=None,
        prev_hash=state["prev_hash"],
        data={"note": forged["note"]},
    )
    check = run([*rows[:14], (position, victim, version, kind, forged), *rows[15:]], seals)
    assert [(f.case_id, f.version) for f in check.findings] == [(victim, 3)]
    assert "altered after version 2 (seal #2 matched it there)" in str(check.findings[0])
    assert check.unsealed == 0
