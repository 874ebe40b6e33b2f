"""Queue tasks for accounts: thin wrappers that load ids and call a service."""

from accounts.services.revocation import revocation_run, revocations_waiting_check


def revocation_run_task(revocation_id: int) -> str:
    return revocation_run(revocation_id=revocation_id).status


def revocation_resume_task(revocation_id: int) -> str:
    """The last product confirmed: continue the waiting revocation (no new attempt)."""
    return revocation_run(revocation_id=revocation_id, resume=True).status


def revocations_waiting_task() -> int:
    return revocations_waiting_check()
