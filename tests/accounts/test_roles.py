"""The role data migration gives each role exactly its permissions."""

import pytest
from django.contrib.auth.models import Group

from accounts.roles import ROLE_PERMISSIONS

pytestmark = pytest.mark.django_db


@pytest.mark.smoke
def test_each_role_has_exactly_its_permissions():
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLE_PERMISSIONS)
    for role, expected in ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=role)
        actual = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert actual == expected, role


def test_role_boundaries_that_matter(support_user, finance_user, admin_user):
    assert not support_user.has_perm("accounts.approve_revocation")
    assert not finance_user.has_perm("accounts.approve_revocation")
    assert admin_user.has_perm("accounts.approve_revocation")
    assert finance_user.has_perm("reconciliation.export_evidence")
    assert not admin_user.has_perm("reconciliation.export_evidence")
    assert not support_user.has_perm("reconciliation.run_reconciliation")
    assert support_user.staff_role == "Support" and admin_user.staff_role == "Admin"
