"""A headless Chromium driven by Playwright (the Python package only: it launches
Debian's chromium, never a browser Playwright downloads), and the running stack."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tests.stack.fixtures import stack  # noqa: F401  (the running stack)

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium; apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class PageWatch:
    """A page with its script errors and dialogs recorded; prompts answered with `token`,
    confirmations accepted."""

    def __init__(self, browser, token: str | None):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[tuple[str, str]] = []
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("dialog", self._answer)
        self.token = token

    def _answer(self, dialog):
        self.dialogs.append((dialog.type, dialog.message))
        if dialog.type == "prompt" and self.token is not None:
            dialog.accept(self.token)
        elif dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def watched(browser):
    made = []

    def open_page(token: str | None = None) -> PageWatch:
        made.append(PageWatch(browser, token))
        return made[-1]

    yield open_page
    for watch in made:
        watch.context.close()


class ServedApp:
    """The API and pages app on a real port, in this process, over a real Redis store."""

    def __init__(self, store, public_reads: bool = True):
        from pydantic import SecretStr
        from werkzeug.serving import make_server

        from api import Services, create_app
        from recycle.settings import Settings

        settings = Settings(api_token=SecretStr(SERVED_TOKEN), public_reads=public_reads, allowed_roots=["/nowhere"])
        services = Services(inspect_pool=lambda pool: {}, check_search=lambda spec: None, export_trial=lambda *a: None)
        self.store = store
        self.server = make_server("127.0.0.1", 0, create_app(settings, store, services), threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.thread.join(10)


SERVED_TOKEN = "served-test-token"


@pytest.fixture
def served(redis_client):
    from proposer.redis_store import RedisStore

    app = ServedApp(RedisStore(redis_client))
    try:
        yield app
    finally:
        app.close()
