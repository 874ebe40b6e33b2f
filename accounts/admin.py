"""Django admin for accounts: every model; the access audit is read-only."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db import transaction

from accounts.models import (
    AccessAudit,
    AccessComp,
    Account,
    ActivityLog,
    ApiScope,
    ApiToken,
    RevocationRequest,
    SessionRecord,
    User,
)
from accounts.services.tokens import ApiTokenError, api_token_issue, api_token_revoke_by_staff


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """People who sign in: staff, and the members of customer accounts."""

    ordering = ("email",)
    list_display = ("email", "public_id", "name", "account", "is_active", "is_staff")
    list_filter = ("is_staff", "is_active", "groups")
    search_fields = ("email", "public_id", "name", "account__public_id", "account__name")
    list_select_related = ("account",)
    raw_id_fields = ("account",)
    # A member is disabled from the account page (audited); here it is only shown.
    readonly_fields = ("is_active", "session_version", "last_login")
    fieldsets = (
        (None, {"fields": ("email", "password", "public_id", "name", "account")}),
        ("Access", {"fields": ("is_active", "session_version")}),
        ("Staff", {"fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "password1", "password2", "account")}),
    )


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    """Billing accounts. Access status moves only through the services (each change is
    audited), never by hand here."""

    ordering = ("name", "email")
    list_display = ("public_id", "name", "email", "access_status", "stripe_customer_id")
    list_filter = ("access_status",)
    search_fields = ("email", "public_id", "name", "stripe_customer_id", "members__email")
    readonly_fields = ("access_status", "grace_ends_at", "is_active", "created_at")
    fields = (
        "public_id",
        "name",
        "email",
        "stripe_customer_id",
        "access_status",
        "grace_ends_at",
        "is_active",
        "created_at",
    )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # A new account (or one given a customer id) takes the subscriptions that waited for
        # it, by the audit's rules.
        from reconciliation.services.subscriptions import subscriptions_link_waiting

        transaction.on_commit(
            lambda: subscriptions_link_waiting(
                account=obj, actor="system:link", source=f"admin:{request.user.email}"
            )
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AccessAudit)
class AccessAuditAdmin(ReadOnlyAdmin):
    list_display = ("at", "account", "actor", "from_status", "to_status", "reason", "reference")
    list_filter = ("to_status",)
    search_fields = ("account__email", "account__public_id", "actor", "reference")
    list_select_related = ("account",)


@admin.register(ActivityLog)
class ActivityLogAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "member", "kind", "path", "ip_address", "source")
    list_filter = ("kind",)
    search_fields = ("member__email", "member__public_id", "member__account__public_id")
    list_select_related = ("member",)
    show_full_result_count = False


@admin.register(RevocationRequest)
class RevocationRequestAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "account", "requested_by", "status", "decided_by", "reference")
    list_filter = ("status",)
    list_select_related = ("account", "requested_by", "decided_by")


@admin.register(SessionRecord)
class SessionRecordAdmin(ReadOnlyAdmin):
    list_display = ("user", "session_key", "created_at")


@admin.register(AccessComp)
class AccessCompAdmin(ReadOnlyAdmin):
    list_display = ("account", "reason", "expires_at", "granted_by", "created_at")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "scopes",
        "created_at",
        "created_by",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("revoked_at",)
    readonly_fields = ("prefix", "created_at", "created_by", "revoked_at", "last_used_at")
    fields = ("name", "prefix", "created_at", "created_by", "revoked_at", "last_used_at")
    actions = ["revoke_tokens"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # Created through the service so only the hash is stored, the raw token is shown once
        # and the staff audit records it (as from the dashboard's API tokens page, which also
        # chooses scopes: here a token gets the default, activity:write).
        token, raw = api_token_issue(
            name=obj.name, scopes=[ApiScope.ACTIVITY_WRITE], actor=request.user
        )
        obj.pk, obj.prefix, obj.token_hash = token.pk, token.prefix, token.token_hash
        obj.created_at, obj.created_by = token.created_at, token.created_by
        obj._state.adding = False
        self.message_user(
            request,
            f"Token for {token.name}: {raw} — copy it now, it is not shown again.",
            level=messages.WARNING,
        )

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: a token's rows keep its id as their source

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request, queryset):
        for token in queryset.filter(revoked_at__isnull=True):
            try:
                api_token_revoke_by_staff(
                    token=token, actor=request.user, reason="Revoked in the Django admin"
                )
            except ApiTokenError:
                continue  # revoked meanwhile
        self.message_user(request, "Revoked.")
