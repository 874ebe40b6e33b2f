"""A tiny product for the activity middleware tests (used with @pytest.mark.urls)."""

from django.http import HttpResponse
from django.urls import include, path


def _ok(request, rest=""):
    return HttpResponse("ok")


def _missing(request):
    return HttpResponse("missing", status=404)


urlpatterns = [
    path("app/", _ok),
    path("app/<path:rest>", _ok),
    path("gone/", _missing),
    path("static/<path:rest>", _ok),
    path("", include("janitor.urls")),
]
