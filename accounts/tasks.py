"""Queue tasks for accounts: thin wrappers that load ids and call a service."""

from accounts.services.revocation import revocation_run


def revocation_run_task(revocation_id: int) -> str:
    return revocation_run(revocation_id=revocation_id).status
