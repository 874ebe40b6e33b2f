"""The Django admin site, with Janitor's throttled sign-in form (Django's templates as they are)."""

from django.contrib import admin

from janitor.forms import AdminLoginForm


class JanitorAdminSite(admin.AdminSite):
    login_form = AdminLoginForm
