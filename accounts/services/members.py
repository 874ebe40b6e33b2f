"""Members of a customer account: disabling one person (who left the team) and enabling them
again, without touching the account's access. Audited like every staff action."""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, StaffActionAudit, StaffActionKind, User
from accounts.services.access_changes import access_changed
from accounts.services.sessions import sessions_revoke_all
from janitor.errors import JanitorError
from products.models import AccessEvent


class MemberError(JanitorError):
    """A member change the rules refuse; the message is fit to show to staff."""


@transaction.atomic
def member_set_enabled(
    *, member: User, enabled: bool, actor: User, reason: str
) -> StaffActionAudit:
    """Disable (every session ended, no sign-in) or enable one member of an account.

    The member row is locked and re-read, so a repeated or concurrent click changes nothing
    twice: asking for the state the member is already in is refused with a clear message.
    """
    if not actor.has_perm("accounts.manage_members"):
        raise MemberError("Your role cannot change an account's members.")
    if not reason.strip():
        raise MemberError("Say why (for the audit).")
    # The account first, then the member: the order every access change takes its locks in.
    account = (
        Account.objects.select_for_update().filter(pk=member.account_id).first()
        if member.account_id
        else None
    )
    locked = User.objects.select_for_update().get(pk=member.pk)
    if account is None or locked.account_id != account.pk or locked.is_staff:
        raise MemberError("Only a customer account's members are managed here.")
    if locked.is_active == enabled:
        state = "enabled" if enabled else "disabled"
        raise MemberError(f"{locked.email} is already {state}.")
    locked.is_active = enabled
    locked.save(update_fields=["is_active"])
    sessions = 0
    if not enabled:
        User.objects.filter(pk=locked.pk).update(session_version=F("session_version") + 1)
        sessions = sessions_revoke_all(user=locked)
    member.is_active = enabled
    # The member's access changed: the account's version moves, and products hear of it.
    access_changed(
        account=account,
        event_type=AccessEvent.MEMBER_ENABLED if enabled else AccessEvent.MEMBER_DISABLED,
        extra={"member": locked.public_id},
    )
    return StaffActionAudit.objects.create(
        kind=StaffActionKind.MEMBER_ENABLED if enabled else StaffActionKind.MEMBER_DISABLED,
        subject=locked,
        account_id=locked.account_id,
        at=timezone.now(),
        actor=actor.email,
        actor_user=actor,
        reason=reason.strip(),
        details={"member": locked.public_id, "sessions_ended": sessions},
    )
