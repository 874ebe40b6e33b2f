"""A customer's login through /app/login/ is recorded as activity (evidence); a staff one is not."""

import pytest
from django.urls import reverse

from accounts.models import ActivityKind, ActivityLog
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def test_customer_login_is_recorded_with_ip(client, customer, support_user):
    response = client.post(
        reverse("customer_login"),
        {"username": customer.email, "password": PASSWORD},
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 302
    login = ActivityLog.objects.get(member=customer, kind=ActivityKind.LOGIN)
    assert login.ip_address == "203.0.113.9"
    client.post(reverse("login"), {"username": support_user.email, "password": PASSWORD})
    assert not ActivityLog.objects.filter(member=support_user).exists()
