"""The HTTP contract as clients and their tools read it: the docs pages work offline, the OpenAPI
document is valid and typed, and what the app answers is what the document says."""

from __future__ import annotations

import re

import pytest

from infra.bootstrap import bootstrap
from infra.settings import Settings
from tests.conftest import START
from tests.e2e.http_support import make_api


@pytest.fixture
def api(tmp_path):
    from infra.clock import ManualClock

    system = bootstrap(Settings(data_dir=tmp_path, clock="manual"), clock=ManualClock(START))
    yield make_api(system)
    system.close()


# ---- item 1: the docs pages from assets the app serves ------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_reference_only_assets_the_app_serves(api, page):
    r = api.client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", r.text, re.I), "a CDN or other remote URL"
    urls = set(re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", r.text))
    urls |= set(re.findall(r"""(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""", r.text))
    assert "/openapi.json" in urls and len(urls) >= 3, urls
    for url in urls:
        assert url.startswith("/"), url
        got = api.client.get(url)
        assert got.status_code == 200 and len(got.content) > 0, (url, got.status_code)
