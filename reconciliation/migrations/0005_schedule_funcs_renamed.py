"""The nightly reconciliation's tasks moved from reconciliation.tasks_audit to
reconciliation.tasks (issue 16): stored django-q2 schedules follow, so a deployment that does not
run ensure_schedules keeps its nightly run."""

from django.db import migrations

RENAMED = {
    "reconciliation.tasks_audit.audit_scheduled": "reconciliation.tasks.reconciliation_scheduled",
    "reconciliation.tasks_audit.audit_run_task": "reconciliation.tasks.reconciliation_run_task",
    "reconciliation.tasks_audit.audit_apply_task": "reconciliation.tasks.reconciliation_apply_task",
}


def forwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in RENAMED.items():
        Schedule.objects.filter(func=old).update(func=new)


def backwards(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in RENAMED.items():
        Schedule.objects.filter(func=new).update(func=old)


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0004_team_accounts"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
