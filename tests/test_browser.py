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
    # symmetry cannot record a forward pass of it either: a failed lens too, never "ok"
    assert set(report.failed) == {"nonlinearity", "modularity", "symmetry"}
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
    assert len(notes) == 3  # one per failed lens, laid out and readable
    for note in notes:
        assert note["w"] > 100 and note["h"] > 10
        assert "could not run on this model" in note["text"] and "no inference mode" in note["text"]


# ---- large models ---------------------------------------------------------------------------
# Real architectures at their real depth (random init, nothing downloaded), small inputs and
# small n so each report builds in seconds: a torchvision EfficientNet-B0 (65 activation sites,
# 213 weight tensors, 82 layers in the strength graph) and a BERT built from a small config.

FIRST_SCREEN_LINES = 12  # text lines a section may show before its first plot
NO_PLOT_LINES = 20  # a section without a plot (its caveats are its finding): lines before its tables
LINE_PX = 18  # one line of the report's body text (14 px font)


def _efficientnet_b0() -> tuple[Any, Any, dict]:
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = tv.models.efficientnet_b0(weights=None, num_classes=4).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 3, 32, 32, generator=g), torch.arange(48) % 4
    # the null baseline and the companion measures cost minutes at d = 1280: off for this test
    return model, (x, y), {"nonlinearity": {"null_baseline": False, "companions": False}}


def _bert() -> tuple[Any, Any, dict]:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32, num_labels=4)  # fmt: skip
    model = transformers.BertForSequenceClassification(cfg).eval()
    g = torch.Generator().manual_seed(0)
    ids, y = torch.randint(0, 200, (48, 12), generator=g), torch.arange(48) % 4
    return model, (ids, y), {}


LARGE = {"efficientnet_b0": _efficientnet_b0, "bert": _bert}

LAYOUT_JS = """
(async () => {
  const imgs = [...document.querySelectorAll('img.plot')];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  const sections = [...document.querySelectorAll('main > section')]
    .filter(s => !['summary', 'metadata'].includes(s.id))
    .map(s => {
      const top = s.getBoundingClientRect().top;
      const first = s.querySelector(':scope > figure img.plot, :scope > details');
      return {id: s.id, before: first ? first.getBoundingClientRect().top - top : s.offsetHeight,
              first: first ? first.tagName : null, plot: !!s.querySelector('img.plot')};
    });
  const hot = [...document.querySelectorAll('.plotbox .hot')];
  // a slot is what the pointer finds at its centre (nothing covers it): sample every 7th
  const hit = hot.filter((h, i) => i % 7 === 0).map(h => {
    h.scrollIntoView({block: 'center'});
    const r = h.getBoundingClientRect();
    return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2) === h;
  });
  window.scrollTo(0, 0);
  return {
    hit,
    plots: imgs.map(i => ({alt: i.alt, naturalWidth: i.naturalWidth, offsetWidth: i.offsetWidth,
                           offsetHeight: i.offsetHeight, boxWidth: i.parentElement.offsetWidth})),
    sections, main: document.querySelector('main').offsetWidth,
    hot: hot.length, titles: hot.slice(0, 400).map(h => h.title),
    hotVisible: hot.filter(h => h.offsetWidth > 0 && h.offsetHeight > 0).length,
    details: [...document.querySelectorAll('.caveats details')].map(d => d.open),
  };
})()
"""


@pytest.mark.parametrize("name", list(LARGE))
def test_large_model_report_reads_in_chromium(name, tmp_path):
    """A large model's report: every plot visible and page-wide, no overlapping tick labels, each
    point named on hover, and each section's finding and first plot on its first screen."""
    from netxray.lenses.modularity import plot_modularity_curve
    from netxray.lenses.nonlinearity import plot_signatures
    from netxray.lenses.parameters import plot_strengths
    from netxray.report import scan
    from test_report_scale import assert_no_overlap

    model, data, options = LARGE[name]()
    t0 = time.perf_counter()
    report = scan(model, data, seed=0, n_samples=48, modularity_n=48, repeats=2, options=options, progress=False)
    index = report.save(tmp_path / name)
    seconds = time.perf_counter() - t0
    for lens in ("nonlinearity", "modularity", "parameters", "symmetry"):
        assert report.results[lens].status == "ok", f"{name}: {lens} {report.results[lens].reason}"
    sites = report.results["nonlinearity"].tables["signature"]["site"].tolist()
    strengths = report.results["parameters"].tables["node_strengths"]
    if name == "efficientnet_b0":  # the scale this test is for
        assert len(sites) >= 60 and strengths.loc[strengths["status"] == "ok", "layer"].nunique() >= 60

    # the report's per-layer figures, redrawn from its tables: no two tick labels overlap
    curve = report.results["modularity"].tables
    for what, fig in (("signature", plot_signatures(report.results["nonlinearity"].tables["signature"])),
                      ("modularity", plot_modularity_curve(curve["curve"], curve["redundancy"])),
                      ("strengths", plot_strengths(strengths))):  # fmt: skip
        assert_no_overlap(fig, f"{name} {what}")

    browser = Browser(tmp_path / "chrome-profile")
    try:
        session = open_page(browser, index.resolve().as_uri())
        page = evaluate(browser, session, LAYOUT_JS)
        height = evaluate(browser, session, "document.documentElement.scrollHeight")
        clip = {"x": 0, "y": 0, "width": 1280, "height": min(height, 2000), "scale": 1}
        shot = browser.call("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                      "captureBeyondViewport": True}, session)  # fmt: skip
        errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]  # fmt: skip
    finally:
        browser.close()
    assert errors == []
    expected = sum(len(r.plots) for r in report.results.values())
    assert len(page["plots"]) == expected >= 4
    for p in page["plots"]:
        assert p["naturalWidth"] > 0 and p["offsetWidth"] > 100 and p["offsetHeight"] > 50, f"not visible: {p}"
        assert p["boxWidth"] == p["offsetWidth"], f"hover layer and image differ in size: {p}"
    wide = [p for p in page["plots"] if p["alt"] in ("Non-linearity signature", "Node strengths")]
    if name == "efficientnet_b0":
        assert all(p["offsetWidth"] >= 0.9 * (page["main"] - 100) for p in wide), f"not page-wide: {wide}"
    # names on demand: a hover slot per site of the signature, each titled with its name
    assert page["hot"] >= len(sites) and page["hotVisible"] == page["hot"]
    assert all(any(t.startswith(s + " ") for t in page["titles"]) for s in sites[:50])
    assert page["hit"] and all(page["hit"]), "a hover slot is covered by something else"
    for s in page["sections"]:
        assert s["first"] is not None, f"section {s['id']} has neither plot nor table"
        lines, limit = s["before"] / LINE_PX, FIRST_SCREEN_LINES if s["plot"] else NO_PLOT_LINES
        assert lines <= limit, f"section {s['id']}: {lines:.1f} lines before its first {s['first']}"
    assert not any(page["details"]), "exception lists start folded"

    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    (tmp_path / f"report-{name}.png").write_bytes(png)
    if os.environ.get("NETXRAY_SCREENSHOTS"):  # NETXRAY_SCREENSHOTS=docs pytest -k large: refresh docs/
        target = Path(os.environ["NETXRAY_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        (target / f"report-{name}.png").write_bytes(png)
    size = index.stat().st_size
    print(f"{name}: {len(sites)} sites, report {size} bytes, built and saved in {seconds:.1f} s; "
          f"lines before the first plot: {[round(s['before'] / LINE_PX, 1) for s in page['sections']]}")
