"""Signing a member in as a browser would, and asking the session store about a session."""

from importlib import import_module

from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.factories import PASSWORD


def sign_in(user) -> Client:
    """A separate browser: signs in through the real customer form and opens the app."""
    client = Client()
    response = client.post(
        reverse("customer_login"), {"username": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302, response.content
    assert client.get(reverse("customer_home")).status_code == 200
    return client


def session_exists(key: str) -> bool:
    return import_module(settings.SESSION_ENGINE).SessionStore().exists(key)
