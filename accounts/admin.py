"""Django admin for accounts: every model; the access audit is read-only."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import (
    AccessAudit,
    AccessComp,
    ActivityLog,
    ApiToken,
    RevocationRequest,
    SessionRecord,
    User,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "public_id", "name", "access_status", "is_active", "is_staff")
    list_filter = ("access_status", "is_staff", "is_active", "groups")
    search_fields = ("email", "public_id", "name", "stripe_customer_id")
    # Access status moves only through the services (each change is audited), never by hand here.
    readonly_fields = (
        "access_status",
        "grace_ends_at",
        "is_active",
        "session_version",
        "last_login",
    )
    fieldsets = (
        (None, {"fields": ("email", "password", "public_id", "name", "stripe_customer_id")}),
        ("Access", {"fields": ("access_status", "grace_ends_at", "is_active", "session_version")}),
        ("Staff", {"fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


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
    list_display = ("occurred_at", "account", "kind", "path", "ip_address", "source")
    list_filter = ("kind",)
    search_fields = ("account__email", "account__public_id")
    list_select_related = ("account",)
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
    list_display = ("name", "prefix", "created_at", "revoked_at", "last_used_at")
    readonly_fields = ("prefix", "token_hash", "created_at", "last_used_at")
    fields = ("name", "prefix", "token_hash", "created_at", "revoked_at", "last_used_at")
