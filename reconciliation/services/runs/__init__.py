"""The reconciliation run (the nightly audit, in the README's words): start, execute, decide,
apply and schedule, each its own module by reason to change. Callers import from here."""

from reconciliation.services.runs.apply import (
    APPLY_BATCH,
    links_apply,
    outcomes_apply,
    reconciliation_run_apply_begin,
    reconciliation_run_apply_finish,
    reconciliation_run_apply_queue,
    reconciliation_run_discard,
)
from reconciliation.services.runs.common import (
    RECONCILIATION_ACTOR,
    RUN_TASK_TIMEOUT,
    SCHEDULE_TRIGGER,
    PhaseTimer,
    Progress,
    ProgressCallback,
    RunStateError,
)
from reconciliation.services.runs.decide import (
    ACCOUNT_BATCH,
    LISTING_UNREACHED,
    WITH_ACCESS,
    StatusSets,
    outcomes_decide,
)
from reconciliation.services.runs.execute import (
    MIRROR_ROWS_PER_WRITE,
    reconciliation_run,
    reconciliation_run_execute,
)
from reconciliation.services.runs.schedule import (
    SCHEDULE_FUNC,
    SCHEDULE_NAME,
    reconciliation_schedule_ensure,
)
from reconciliation.services.runs.start import (
    RUN_STALE_AFTER,
    SCHEDULED_MIN_GAP,
    reconciliation_run_queue,
    reconciliation_run_start,
)

__all__ = [
    "ACCOUNT_BATCH",
    "APPLY_BATCH",
    "LISTING_UNREACHED",
    "MIRROR_ROWS_PER_WRITE",
    "RECONCILIATION_ACTOR",
    "RUN_STALE_AFTER",
    "RUN_TASK_TIMEOUT",
    "SCHEDULED_MIN_GAP",
    "SCHEDULE_FUNC",
    "SCHEDULE_NAME",
    "SCHEDULE_TRIGGER",
    "WITH_ACCESS",
    "PhaseTimer",
    "Progress",
    "ProgressCallback",
    "RunStateError",
    "StatusSets",
    "links_apply",
    "outcomes_apply",
    "outcomes_decide",
    "reconciliation_run",
    "reconciliation_run_apply_begin",
    "reconciliation_run_apply_finish",
    "reconciliation_run_apply_queue",
    "reconciliation_run_discard",
    "reconciliation_run_execute",
    "reconciliation_run_queue",
    "reconciliation_run_start",
    "reconciliation_schedule_ensure",
]
