from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps  # the module: one AppConfig class here


class JanitorConfig(AppConfig):
    name = "janitor"
    verbose_name = "Janitor"
    default = True


class JanitorAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with Janitor's site as `admin.site` (its login is throttled)."""

    default = False
    default_site = "janitor.admin_site.JanitorAdminSite"
