"""Realistic requests for each policy, used by the demo, the benchmarks and the tests."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Any

from domain.validation import npi_check_digit


def npi(first_nine: str) -> str:
    return first_nine + npi_check_digit(first_nine)


PROVIDER_NPI = npi("123456789")
OTHER_PROVIDER_NPI = npi("198765432")
SITE_NPI = npi("155555555")

PROGRAMS: dict[str, dict[str, Any]] = {
    "healthspring-ma/radiation-oncology": {
        "line_of_business": "medicare", "place_of_service": "22",
        "procedures": [{"code": "RCBREA", "units": 1, "modifiers": []}], "diagnoses": ["C50.912"],
        "site": "Riverside Cancer Center",
    },
    "aetna-bh-il/radiology": {
        "line_of_business": "medicaid", "place_of_service": "22",
        "procedures": [{"code": "70553", "units": 1, "modifiers": []}], "diagnoses": ["G43.909"],
        "site": "Lakeshore Imaging",
    },
    "aetna-bh-il/msk": {
        "line_of_business": "duals", "place_of_service": "24",
        "procedures": [{"code": "SPINE", "units": 1, "modifiers": []}, {"code": "22633", "units": 2, "modifiers": []}],
        "diagnoses": ["M54.51"], "site": "Prairie Spine Institute",
    },
    "cigna-commercial/medical-oncology": {
        "line_of_business": "commercial", "place_of_service": "11",
        "procedures": [{"code": "J9271", "units": 20, "modifiers": []}], "diagnoses": ["C34.90"],
        "site": "Harbor Oncology Associates",
    },
    "wellsense-ma-nh/msk": {
        "line_of_business": "commercial", "place_of_service": "24",
        "procedures": [{"code": "JOINT", "units": 1, "modifiers": []}, {"code": "27447", "units": 1, "modifiers": ["RT"]}],
        "diagnoses": ["M17.11"], "site": "Granite State Orthopedics",
    },
    "cigna-commercial/dme": {
        "line_of_business": "commercial", "place_of_service": "12",
        "procedures": [{"code": "E0601", "units": 1, "modifiers": []}, {"code": "A7030", "units": 3, "modifiers": []}],
        "diagnoses": ["G47.33"], "site": "HomeCare Medical Supply",
    },
}


def document(name: str = "clinical-notes.pdf", size: int = 48_213, seed: str = "") -> dict:
    sha = hashlib.sha256(f"{name}:{size}:{seed}".encode()).hexdigest()
    return {"document_id": sha, "name": name, "size": size, "sha256": sha}


def request(policy: str, *, date_of_service: date, member_no: int = 1, urgent: bool = False,
            documents: list[dict] | None = None, clinical: dict | None = None, provider_npi: str = PROVIDER_NPI,
            line_of_business: str | None = None, **overrides: Any) -> dict:
    p = PROGRAMS[policy]
    body = {
        "policy": policy,
        "line_of_business": line_of_business or p["line_of_business"],
        "member": {"id": f"M{member_no:08d}", "first_name": "Alex", "last_name": f"Rivera{member_no}", "dob": "1958-04-02"},
        "ordering_provider": {"npi": provider_npi, "tin": "123456789", "name": "Dr. Jane Doe", "phone": "555-555-0100",
                              "fax": "555-555-0101", "notify_by_email": True},
        "site": {"npi": SITE_NPI, "tin": "987654321", "name": p["site"], "place_of_service": p["place_of_service"]},
        "service": {"date_of_service": date_of_service.isoformat(), "procedures": [dict(x) for x in p["procedures"]],
                    "diagnoses": list(p["diagnoses"])},
        "urgent": urgent,
        "clinical": clinical or {},
        "documents": documents if documents is not None else [document()],
    }
    body.update(overrides)
    return body


def later(now: datetime, days: int) -> date:
    return (now + timedelta(days=days)).date()
