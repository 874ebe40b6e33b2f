"""Every PDF Janitor renders: WeasyPrint, loading only data: URIs and Janitor's static files.

WeasyPrint's default fetcher opens file:, http: and https: URLs, so HTML that ever carried a
user's URL could read local files or reach internal hosts. StaticOnlyURLFetcher refuses both.
Import this module where a PDF is made, not at start-up: loading WeasyPrint is slow.
"""

import mimetypes
from urllib.parse import unquote, urljoin, urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousFileOperation
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

# Relative URLs and {% static %} paths resolve against this; it is never fetched over the
# network (".invalid" cannot resolve): the fetcher maps its static URLs to files on disk.
PDF_BASE_URL = "https://janitor.invalid/"


class PdfResourceRefused(ValueError):
    """A PDF asked for a resource outside data: URIs and the app's static files."""


class StaticOnlyURLFetcher(URLFetcher):
    """WeasyPrint 70+ fetcher (a URLFetcher subclass; function fetchers are gone)."""

    def __init__(self, **kwargs):
        # data: is the only scheme ever handed to urllib; static files are read here.
        super().__init__(allowed_protocols={"data"}, allow_redirects=False, **kwargs)

    def fetch(self, url, headers=None):
        if urlsplit(url).scheme.lower() == "data":
            return super().fetch(url, headers)
        path = static_file_for(url)
        if path is None:
            raise PdfResourceRefused(
                f"PDFs load only data: URIs and Janitor's static files, not {url[:200]!r}"
            )
        with open(path, "rb") as handle:
            body = handle.read()
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return URLFetcherResponse(url, body, headers={"Content-Type": content_type})


def static_file_for(url: str) -> str | None:
    """The file behind `url` if it is one of the app's static files under PDF_BASE_URL."""
    prefix = urljoin(PDF_BASE_URL, settings.STATIC_URL)
    if not url.startswith(prefix):
        return None
    relative = unquote(urlsplit(url).path[len(urlsplit(prefix).path) :])
    if not relative or "\x00" in relative:
        return None
    try:
        # The finders join under their own roots and refuse "..", absolute paths and the like.
        found = finders.find(relative)
    except SuspiciousFileOperation:
        return None
    return found if isinstance(found, str) else None


def pdf_render(*, html: str) -> bytes:
    """`html` as PDF bytes, with only data: URIs and the app's static files loadable."""
    return HTML(string=html, base_url=PDF_BASE_URL, url_fetcher=StaticOnlyURLFetcher()).write_pdf()
