"""Who may do what, decided once for both entry points (infra/http/guard.py, and the CLI's
writes and reads): the principal a bearer token names (signature, lifetime, revocation), the
roles of each read and of each command on a case (``application.commands.CASE_COMMANDS``;
admin may do everything), and which cases, NPIs and documents a provider may reach. An entry
point says only where the token came from and how a refusal is answered (HTTP 401, 403 or
404; the CLI exits 2). The README's "Who may do what" is the table these make."""

from __future__ import annotations

import time
from uuid import UUID

import jwt

from application.commands import CaseCommand
from domain.errors import CaseNotFound, DomainError, NotPermitted
from infra.bootstrap import System
from infra.identity import Principal, load_secret, verify
from projections.case_owners import owners_of

# Reads that show member data (names, dates of birth, member ids, diagnoses): a case and its history,
# worklist and certification-summary rows, the authorization lookup. Never ops: its contract is queues,
# metrics and the dashboard (case numbers, status, clocks, policy), and a search by name or date of birth
# would tell it who is a member even with the rows blanked.
MEMBER_DATA_READERS = ("provider", "reviewer", "auditor")
SUBMITTERS = ("provider",)  # a request (POST /cases, `caselog submit`) and drafts
VERIFIED_KEPT = 4096  # tokens whose signature and claims were checked, kept until they expire


class Unauthenticated(DomainError):
    """No token, or one not accepted: bad signature, expired, malformed, too long-lived, revoked."""

    rule = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str, *, rule: str | None = None, title: str | None = None):
        super().__init__(detail, rule=rule)
        if title is not None:
            self.title = title


class Forbidden(NotPermitted):
    """The principal's role may not do this."""

    rule = "forbidden"
    title = "Not allowed"


def require_role(who: Principal, allowed: tuple[str, ...]) -> Principal:
    if who.role not in allowed and who.role != "admin":
        may = ", ".join((*allowed, "admin"))
        raise Forbidden(f"role {who.role!r} may not do this (allowed: {may})")
    return who


class Authorization:
    def __init__(self, system: System):
        self.system = system
        self.access = system.access
        self.secret = load_secret(system.settings.data_dir)
        self.max_ttl_seconds = system.settings.token_max_ttl_hours * 3600
        self._verified: dict[str, Principal] = {}

    # ---- who is asking -------------------------------------------------------------------------

    def principal(self, token: str | None, *, how: str = "a token from `caselog token`") -> Principal:
        """The principal a token names, or Unauthenticated: ``how`` says how to give one."""
        if not token:
            raise Unauthenticated(f"send {how}")
        who = self._verified.get(token)
        if who is None or who.expires_at <= time.time():
            who = self._verify(token)
        if self.access.is_revoked(who.token_id):
            raise Unauthenticated("the token was revoked", rule="token-revoked", title="Token revoked")
        return who

    def _verify(self, token: str) -> Principal:
        """The signature and claims checked once per token (a tenth of a write's CPU when done at
        every request); its expiry is checked again at every use, revocation always read."""
        self._verified.pop(token, None)
        try:
            who = verify(self.secret, token, max_ttl_seconds=self.max_ttl_seconds)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token was not accepted: {exc}", rule="invalid-token",
                                  title="Invalid token") from None
        if len(self._verified) >= VERIFIED_KEPT:
            self._verified.clear()
        self._verified[token] = who
        return who

    # ---- which cases ---------------------------------------------------------------------------

    def owners(self, case_id: str, *, fresh: bool = False) -> dict:
        """Whose the case is (projections.case_owners), or CaseNotFound. ``fresh``: after catching
        the read model up (a write by another process, such as the CLI or the API, not applied yet)."""
        try:
            key = str(UUID(str(case_id)))
        except ValueError:
            raise CaseNotFound(f"no case {case_id!r}") from None
        if fresh:
            self.system.catch_up()
        owners = owners_of(self.system.db, key)
        if owners is None:
            if not fresh:
                return self.owners(case_id, fresh=True)
            raise CaseNotFound(f"no case {case_id}")
        return owners

    def visible(self, who: Principal, case_id: str) -> None:
        """A provider sees the cases of its NPIs and of worklists shared with it; a request never
        submitted (a draft, or one that expired or was cancelled as a draft) has no ordering
        provider yet and belongs to whoever started it and those it shares its worklist with.
        Anyone else's case is CaseNotFound (not 403: another provider's case is not revealed).
        Asked of the case-owners read model, not of a replayed case."""
        npis = self.access.visible_npis(who)
        if npis is None:
            return
        for fresh in (False, True):  # a refusal is checked again on the read model caught up
            owners = self.owners(case_id, fresh=fresh)
            if owners["ordering_npi"] in npis:
                return
            if owners["ordering_npi"] is None and self.access.acts_for(who, owners["starter"]):
                return
        raise CaseNotFound(f"no case {case_id}")

    def reading(self, who: Principal, case_id: str) -> None:
        """May ``who`` read this case's member data (its view, its history)?"""
        require_role(who, MEMBER_DATA_READERS)
        self.visible(who, case_id)

    # ---- writes --------------------------------------------------------------------------------

    def attachable(self, who: Principal, docs: list, *, objects_uploaded: bool = True) -> list[dict]:
        """The documents of a body as stored references (an id alone resolved from its upload); a
        provider attaches only its own uploads and those of providers sharing their worklist with it,
        whatever the entry point. ``objects_uploaded=False`` (the CLI) lets a reviewer's or admin's
        full document object through without an upload (a fax taken in), never a provider's."""
        documents = self.system.documents
        if who.role == "provider":
            return documents.references(docs, user=who.actor, colleagues=self.access.sharing_with(who))
        return documents.references(docs, objects_uploaded=objects_uploaded)

    def submission(self, who: Principal, data: dict, *, objects_uploaded: bool = True) -> dict:
        """A new request: a provider submits for its own NPIs only, with documents it may attach."""
        require_role(who, SUBMITTERS)
        if who.role == "provider" and data["ordering_provider"]["npi"] not in who.npis:
            raise NotPermitted("a provider submits for its own NPIs only", rule="not-your-npi")
        data["documents"] = self.attachable(who, data["documents"], objects_uploaded=objects_uploaded)
        return data

    def draft_submission(self, who: Principal, case_id: str, data: dict) -> dict:
        """A draft completed: for the NPIs of the provider completing it, or of the provider who
        started it when that one shares its worklist with the completer."""
        require_role(who, SUBMITTERS)
        self.visible(who, case_id)
        npi = data["ordering_provider"]["npi"]
        if who.role == "provider" and npi not in self.access.ordering_npis(who, self.owners(case_id)["starter"]):
            raise NotPermitted("a draft is submitted for the NPIs of the provider completing it, or of the"
                               " provider who started it and shares its worklist with it", rule="not-your-npi")
        data["documents"] = self.attachable(who, data["documents"])
        return data

    def command(self, who: Principal, command: CaseCommand, case_id: str, data: dict, *,
                objects_uploaded: bool = True) -> dict:
        """A command on a case: its roles (the table's), the cases it names visible to a provider,
        and the documents it attaches. Returns the body with its documents resolved."""
        require_role(who, command.roles)
        if who.role == "provider":
            if command.linked_cases:
                for other in data.get("also_cases", []):
                    self.visible(who, other)
            self.visible(who, case_id)
        if command.attaches_documents:
            data["documents"] = self.attachable(who, data["documents"], objects_uploaded=objects_uploaded)
        return data
