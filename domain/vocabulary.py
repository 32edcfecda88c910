"""The words of the domain, defined once: lines of business, statuses, outcomes, channels, P2P
levels, update kinds. Request bodies, projections and the policy table reuse these."""

from __future__ import annotations

LINES_OF_BUSINESS = ("medicare", "medicaid", "duals", "commercial")
MEDICARE_LINES = frozenset({"medicare", "duals"})

STATUSES = ("draft", "pending", "held", "approved", "partially_approved", "denied", "alternative_recommended",
            "cancelled", "withdrawn", "expired")
OPEN_STATUSES = frozenset({"pending", "held"})
AUTHORIZED_STATUSES = frozenset({"approved", "partially_approved"})
CLOSED_STATUSES = frozenset({"cancelled", "withdrawn", "expired"})

OUTCOMES = ("approved", "partially_approved", "denied", "alternative_recommended")
ADVERSE = frozenset({"partially_approved", "denied", "alternative_recommended"})
LINE_DECISIONS = ("approved", "partially_approved", "denied")
RECONSIDERATION_OUTCOMES = LINE_DECISIONS
APPEAL_OUTCOMES = ("upheld", "overturned", "partially_overturned")
RENTAL_UNITS = ("days", "months")
PHYSICIAN_CREDENTIALS = frozenset({"MD", "DO"})

CHANNELS = ("portal", "phone", "fax")  # how a request came in
NOTICE_CHANNELS = ("phone", "fax", "e-notification", "mail", "phone_and_writing")
TELEPHONIC_NOTICE = frozenset({"phone", "phone_and_writing"})
WRITTEN_NOTICE = frozenset({"fax", "e-notification", "mail", "phone_and_writing"})

P2P_LEVELS = ("pre_decision", "reconsideration", "consultative_only")

ADMINISTRATIVE_UPDATES = frozenset({"site", "code_correction", "contact"})
CLINICAL_UPDATES = frozenset({"technique", "igrt", "fractions", "cancer_type", "timespan", "regimen"})
UPDATE_KINDS = ("site", "code_correction", "contact", "technique", "igrt", "fractions", "cancer_type", "timespan",
                "regimen")

# what a case's answer offers after its determination (domain.views.post_decision_options)
POST_DECISION_OPTIONS = ("reconsideration", "reconsideration_p2p", "appeal", "accept_alternative", "consultative_p2p",
                         "authorization_update", "authorization_extension")

RECIPIENTS = ("provider", "facility", "member")
LETTER_CHANNELS = ("e-notification", "fax", "mail")
