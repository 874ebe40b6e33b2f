"""janitor/pdf.py: PDFs load data: URIs and the app's static files, nothing else."""

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pypdf import PdfReader

from janitor.pdf import PdfResourceRefused, StaticOnlyURLFetcher, pdf_render


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture
def http_server():
    """A local server that counts what it is asked for (an internal host, as far as a PDF knows)."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = b'body::before { content: "LEAKED-FROM-HTTP" }'
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", hits
    server.shutdown()
    server.server_close()


@pytest.fixture
def static_dir(settings, tmp_path):
    static = tmp_path / "static"
    static.mkdir()
    (static / "pdf-test.css").write_text('body::before { content: "FROM-STATIC" }')
    settings.STATICFILES_DIRS = [static]  # Django clears the finders' cache on this change
    return static


def test_only_data_uris_and_static_files_reach_the_pdf(http_server, static_dir, tmp_path):
    base, hits = http_server
    private = tmp_path / "private.css"
    private.write_text('body::after { content: "LEAKED-FROM-FILE" }')
    html = f"""<html><head>
      <link rel="stylesheet" href="/static/pdf-test.css">
      <link rel="stylesheet" href="data:text/css,p::after%7Bcontent:%22FROM-DATA%22%7D">
      <link rel="stylesheet" href="{private.as_uri()}">
      <link rel="stylesheet" href="{base}/internal.css">
      </head><body><p>Evidence</p><img src="{base}/pixel.png"></body></html>"""
    text = _text(pdf_render(html=html))
    assert "FROM-STATIC" in text and "FROM-DATA" in text and "Evidence" in text
    assert "LEAKED-FROM-FILE" not in text and "LEAKED-FROM-HTTP" not in text
    assert hits == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/hostname",
        "http://127.0.0.1:9/x.css",
        "https://example.com/x.css",
        "ftp://example.com/x.css",
        "https://janitor.invalid/not-static/x.css",
        "https://janitor.invalid/static/../janitor/settings.py",
        "https://janitor.invalid/static/%2e%2e/%2e%2e/janitor/settings.py",
        "https://janitor.invalid/static//etc/hostname",
        "https://janitor.invalid/static/no-such-file.css",
        "https://janitor.invalid.evil.example/static/janitor/janitor.css",
    ],
)
def test_the_fetcher_refuses_everything_else(url):
    with pytest.raises(PdfResourceRefused):
        StaticOnlyURLFetcher().fetch(url)


def test_the_fetcher_serves_the_apps_own_static_files():
    from django.contrib.staticfiles import finders

    response = StaticOnlyURLFetcher().fetch("https://janitor.invalid/static/janitor/janitor.css")
    with open(finders.find("janitor/janitor.css"), "rb") as handle:
        assert response.read() == handle.read()
    assert response.content_type == "text/css"
