"""The HTML report opened in a real browser: headless Chromium driven over the DevTools protocol.

The protocol runs over ``--remote-debugging-pipe`` (file descriptors 3 and 4, NUL-terminated JSON
messages), so no websocket client and no network port are needed. The test loads a real
report from ``file://``, then checks in the page that every plot decoded (``naturalWidth > 0``)
and is laid out at a visible size (``offsetWidth > 0``), that the console and the page logged no
error, that nothing was fetched from the network, and saves a screenshot into ``tmp_path``.

Chromium comes from the Debian package ``chromium`` (the Makefile's ``test`` target installs
it on a fresh machine); without it the test is skipped with that instruction — except under CI
(``CI`` set), where a missing browser is a failure, so a green CI always includes this test.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="headless Chromium not installed: apt-get install chromium (make test does it)",
)


class Browser:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, user_data_dir: Path, timeout: float = 60.0) -> None:
        if CHROMIUM is None:
            pytest.fail("headless Chromium is not installed: apt-get install chromium (make test does it)")
        self.timeout = timeout
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # move the child's ends to 10+ so bash's "3<&A 4>&B" cannot clobber one another (dash
        # cannot redirect fds above 9, hence bash)
        a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
            "--window-size=1280,900", f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe",
            "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", f'exec "$0" "$@" 3<&{a} 4>&{b}', CHROMIUM, *flags],
            pass_fds=(a, b), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(a)
        os.close(b)
        self.wfd, self.rfd = to_chrome_w, from_chrome_r
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _recv(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            # select, not a bare read: a hung browser must fail the test, not block it forever
            if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                raise TimeoutError(f"no answer from Chromium within {self.timeout} s")
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"Chromium closed the DevTools pipe: {err[-2000:]}")
            self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.wfd, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._recv()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        for ev in self.events:
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev
        while True:
            ev = self._recv()
            self.events.append(ev)
            if ev.get("method") == method and ev.get("sessionId") == session:
                return ev

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.wfd)
        os.close(self.rfd)


def open_page(browser: Browser, url: str) -> str:
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", None, session)
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)  # fmt: skip
    browser.call("Page.navigate", {"url": url}, session)
    browser.wait_event("Page.loadEventFired", session)
    return session


def evaluate(browser: Browser, session: str, expression: str) -> Any:
    res = browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                            "awaitPromise": True}, session)  # fmt: skip
    if "exceptionDetails" in res:
        raise AssertionError(f"page script failed: {res['exceptionDetails']}")
    return res["result"].get("value")


PLOTS_JS = """
(async () => {
  const imgs = [...document.querySelectorAll('img')];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return imgs.map(i => ({alt: i.alt, cls: i.className, src: i.src.slice(0, 22),
    naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
    offsetWidth: i.offsetWidth, offsetHeight: i.offsetHeight, complete: i.complete}));
})()
"""


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, trained, digits):
    """A real report: a trained CNN scanned with every lens, saved to disk."""
    from netxray.report import scan

    model = trained("cnn")
    report = scan(model, digits, seed=0, n_samples=256, modularity_n=200, repeats=2, progress=False)
    out = tmp_path_factory.mktemp("report")
    report.save(out)
    return out, report


def _browse(tmp_path: Path, index: Path) -> tuple[list[dict], list[dict], list[dict], bytes, str]:
    browser = Browser(tmp_path / "chrome-profile")
    try:
        session = open_page(browser, index.resolve().as_uri())
        plots = evaluate(browser, session, PLOTS_JS)
        title = evaluate(browser, session, "document.title")
        shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, session)
        png = base64.b64decode(shot["data"])
        # a few protocol round trips so late console events arrive before we look
        evaluate(browser, session, "1")
        events = list(browser.events)
    finally:
        browser.close()
    console = [e["params"] for e in events if e.get("method") == "Runtime.consoleAPICalled"]
    errors = [e["params"] for e in events if e.get("method") in ("Runtime.exceptionThrown",)]
    errors += [e["params"]["entry"] for e in events
               if e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"]  # fmt: skip
    errors += [c for c in console if c.get("type") in ("error", "assert")]
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return plots, errors, requests, png, title


def test_report_renders_in_chromium(report_dir, tmp_path):
    out, report = report_dir
    index = out / "index.html"
    plots, errors, requests, png, title = _browse(tmp_path, index)

    expected = sum(len(r.plots) for r in report.results.values())
    assert expected >= 4, "a full scan draws at least signature, curve, histograms and strengths"
    plot_imgs = [p for p in plots if p["cls"] == "plot"]
    assert len(plot_imgs) == expected, f"{len(plot_imgs)} plots in the page, {expected} in the report"
    for p in plot_imgs:
        assert p["src"].startswith("data:image/png"), f"plot {p['alt']!r} is not embedded: {p['src']}"
        assert p["complete"] and p["naturalWidth"] > 0 and p["naturalHeight"] > 0, f"not decoded: {p}"
        assert p["offsetWidth"] > 100 and p["offsetHeight"] > 50, f"not visible: {p}"
    assert errors == [], f"console/page errors: {errors}"
    # the only load is the file itself: no network, no other file
    assert [u for u in requests if not u.startswith(("data:", index.resolve().as_uri()))] == []
    assert title.startswith("netxray scan")

    shot = tmp_path / "report.png"
    shot.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a real, non-blank capture


def test_failed_lens_note_is_visible_in_chromium(tmp_path, digits):
    """A model two lenses cannot run: the page still renders, and their notes are on screen."""
    import torch
    from torch import nn

    from netxray.report import scan

    class TrainingOnly(nn.Module):  # refuses inference: the data lenses cannot observe it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training:
                raise NotImplementedError("TrainingOnly has no inference mode")
            return x

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), TrainingOnly(), nn.Linear(32, 10))
    report = scan(model.eval(), digits, n_samples=128, modularity_n=100, repeats=2, progress=False)
    assert set(report.failed) == {"nonlinearity", "modularity"}
    index = report.save(tmp_path / "failing")
    browser = Browser(tmp_path / "chrome-profile")
    try:
        session = open_page(browser, index.resolve().as_uri())
        plots = evaluate(browser, session, PLOTS_JS)
        notes = evaluate(browser, session, """[...document.querySelectorAll('.note')].map(n =>
            ({text: n.innerText, w: n.offsetWidth, h: n.offsetHeight}))""")
        errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]  # fmt: skip
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session)
    finally:
        browser.close()
    (tmp_path / "failing.png").write_bytes(base64.b64decode(shot["data"]))
    assert errors == []
    assert len(plots) >= 2 and all(p["naturalWidth"] > 0 and p["offsetWidth"] > 0 for p in plots)
    assert len(notes) == 2  # one per failed lens, laid out and readable
    for note in notes:
        assert note["w"] > 100 and note["h"] > 10
        assert "could not run on this model" in note["text"] and "no inference mode" in note["text"]
