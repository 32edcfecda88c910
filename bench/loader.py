"""Bulk-loads a realistic store through the real domain and the real event store (batched
saves), for the benchmarks: ~5 events per case across all policies, 2,000 providers."""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

from domain.case import Case
from domain.context import Context
from infra.bootstrap import System
from infra.demo.samples import PROGRAMS, document, later, npi, request

MD = {"kind": "reviewer", "id": "dr-bench", "credential": "MD"}
POLICIES = list(PROGRAMS)
DENIABLE = ["cigna-commercial/medical-oncology", "cigna-commercial/dme", "wellsense-ma-nh/msk"]


def providers(n: int = 2000) -> list[str]:
    return [npi(f"{100000000 + i * 37:09d}") for i in range(n)]


def load(system: System, cases: int, batch: int | None = None, seed: int = 7, progress=None) -> dict:
    # Very large saves stall in psycopg's pipeline on PostgreSQL (seen with 2,500 events in one
    # save); commands save a handful of events, so batches stay small there.
    batch = batch or (500 if system.db.dialect == "sqlite" else 40)
    rng = random.Random(seed)
    app, clock = system.app, system.clock
    npis = providers()
    started, events, made = time.perf_counter(), 0, 0
    sample = {"authorizations": [], "members": [], "case_numbers": [], "npis": npis}
    while made < cases:
        size = min(batch, cases - made)
        ids = [uuid.uuid4() for _ in range(size)]
        numbers = system.registry.case_numbers([str(i) for i in ids])
        aggregates = []
        for case_id in ids:
            made += 1
            clock.advance(timedelta(seconds=30))
            roll = rng.random()
            policy = rng.choice(DENIABLE) if roll > 0.85 else rng.choice(POLICIES)
            provider = rng.choice(npis)
            body = request(policy, date_of_service=later(clock.now(), rng.randint(3, 40)), member_no=made, provider_npi=provider,
                           documents=[document(seed=str(made))])
            ctx = Context(clock.now(), {"kind": "provider", "id": provider})
            case = Case.submit(ctx, case_id=case_id, case_number=numbers[str(case_id)], request=body)
            review = Context(clock.now() + timedelta(hours=2), MD)
            if roll < 0.70:
                extra = {"technique": "IMRT", "fractions": 20, "igrt": True} if policy.startswith("healthspring") else {}
                if case.row.validity.kind == "stated":
                    extra["valid_to"] = later(review.now, 60).isoformat()
                case.determine(review, outcome="approved", **extra)
                if len(sample["authorizations"]) < 5000:
                    sample["authorizations"].append((case.authorization_number, provider))
            elif roll < 0.85:
                case.place_hold(review, ["clinical notes"])
            else:
                case.determine(review, outcome="denied", rationale="criteria not met", guidelines=["guideline 1"])
            if len(sample["members"]) < 5000:
                m = body["member"]
                sample["members"].append((m["id"], m["dob"], m["last_name"]))
                sample["case_numbers"].append(case.case_number)
            events += len(case.pending_events)
            aggregates.append(case)
        app.save(*aggregates)
        if progress:
            progress(made, events)
    elapsed = time.perf_counter() - started
    return {"cases": made, "events": events, "seconds": round(elapsed, 1), "events_per_second": round(events / elapsed), "sample": sample}
