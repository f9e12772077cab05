"""Who a stage may email: the operator's allowlist of addresses and domains, and in the SES sandbox verified identities.

A run's email goes to the address its caller typed, from the stage's verified sender, with caller-chosen text (the
competition slug) in it: without a brake the service is a mail relay. `check_recipient` runs before a run is admitted,
so a refused address costs no write; its `InvalidRequest` answers 400 naming `email`.
"""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.config import ALLOWED_RECIPIENTS, Settings
from chalicelib.run_request import InvalidRequest

# Whether SES may send to an address (a verified identity: the address itself or its domain).
VerifiedCheck = Callable[[str], bool]


def allowed(email: str, entries: tuple[str, ...]) -> bool:
    """`email` (already canonical: lower-case domain) is on the list itself or by its domain."""
    domain = email.rpartition("@")[2].lower()
    return email.lower() in entries or domain in entries


def check_recipient(email: str, settings: Settings, verified: VerifiedCheck | None) -> None:
    """InvalidRequest("email", why) unless this stage may email `email`.

    The local stage with no allowlist mails everybody (its mail lands in the outbox and the emulator); a deployed
    stage with none mails nobody, so a forgotten setting fails closed."""
    if not settings.allowed_recipients and settings.is_local:
        return
    if not allowed(email, settings.allowed_recipients):
        raise InvalidRequest(
            "email",
            f"this service does not email {email}: its operator allows only listed addresses and domains "
            f"({ALLOWED_RECIPIENTS}; Terraform variable allowed_recipients)",
        )
    if settings.ses_sandbox and verified is not None and not verified(email):
        raise InvalidRequest(
            "email",
            f"{email} is not a verified SES identity, and this account's SES is in its sandbox: verify the address "
            "(aws ses verify-email-identity) or request SES production access",
        )


def ses_verified(ses_client: object) -> VerifiedCheck:
    """A VerifiedCheck over SES GetIdentityVerificationAttributes: the address, or its domain, verified."""

    def check(email: str) -> bool:
        domain = email.rpartition("@")[2]
        answer = ses_client.get_identity_verification_attributes(Identities=[email, domain])  # type: ignore[attr-defined]
        found = answer.get("VerificationAttributes", {})
        return any(found.get(identity, {}).get("VerificationStatus") == "Success" for identity in (email, domain))

    return check
