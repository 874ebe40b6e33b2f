"""Django admin for the provider side (read-mostly: changes go through the services)."""

from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from reconciliation.models import (
    Dispute,
    EvidenceExport,
    Flag,
    FlagNote,
    ReconciliationRun,
    RunOutcome,
    Subscription,
    WebhookAttempt,
    WebhookEvent,
)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = (
        "provider_id",
        "account",
        "customer_id",
        "status",
        "amount",
        "currency",
        "provider_updated_at",
    )
    list_filter = ("status",)
    search_fields = ("provider_id", "customer_id", "account__email")
    list_select_related = ("account",)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("provider_event_id", "type", "status", "attempts", "created", "received_at")
    list_filter = ("status", "type")
    search_fields = ("provider_event_id", "customer_id")


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(ReadOnlyAdmin):
    list_display = ("event", "started_at", "outcome", "trigger")


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "status", "dry_run", "subscriptions_read", "change_ratio")
    list_filter = ("status",)


@admin.register(RunOutcome)
class RunOutcomeAdmin(ReadOnlyAdmin):
    list_display = ("run", "account", "outcome", "applied")
    list_filter = ("outcome",)
    list_select_related = ("account",)


@admin.register(Flag)
class FlagAdmin(ReadOnlyAdmin):
    list_display = ("account", "kind", "status", "opened_at", "assignee")
    list_filter = ("status", "kind")
    search_fields = ("account__email", "account__public_id")
    list_select_related = ("account", "assignee")


@admin.register(FlagNote)
class FlagNoteAdmin(ReadOnlyAdmin):
    list_display = ("flag", "author", "action", "created_at")


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ("provider_id", "account", "amount", "currency", "reason", "status", "due_by")
    list_filter = ("status", "reason")
    list_select_related = ("account",)


@admin.register(EvidenceExport)
class EvidenceExportAdmin(ReadOnlyAdmin):
    list_display = ("at", "account", "kind", "actor")
