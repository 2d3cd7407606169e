"""The console in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against the real dev stack: every function its own process, the embedded databases, the seeded
synthetic mall. Slow: run by `make browser`. Screenshots go to `.data/artifacts/console/`
(UNDE_ARTIFACTS_DIR overrides).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import port_shift
from unde import devstack
from unde.app_auth import KEY_COOKIE
from unde.commands.demo import index_via_function
from unde.console.links import console_url
from unde.db.embedded import DatabaseUrls
from unde.settings import REPO_ROOT
from unde.synthetic.layout import images_root, street_dir
from unde.synthetic.seed import seed_dataset

sync_api = pytest.importorskip("playwright.sync_api", reason="`make browser` installs the [browser] extra")

pytestmark = pytest.mark.slow

OFFSET = 1250 + port_shift()  # ports beside a dev stack, the integration test and the reliability suites
APP_KEY = "browser-test-key-0c4f"
ENV = {"APP_API_KEYS": APP_KEY}
CHROMIUM = os.environ.get("UNDE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(os.environ.get("UNDE_ARTIFACTS_DIR", REPO_ROOT / ".data" / "artifacts" / "console"))
RUN_TIMEOUT_MS = 120_000

# Records, from before the page's own scripts run, when each kind of element first appears.
FIRST_SEEN = """
window.__firstSeen = {};
const kinds = [["scanning", ".photo.scanning"], ["chip", ".chip"], ["skeleton", ".card.skeleton"],
               ["card", ".card:not(.skeleton)"],
               ["ranked", ".card:not(.skeleton):not(.preliminary)"]];
new MutationObserver(() => {
  const now = performance.now();
  for (const [name, selector] of kinds) {
    if (!(name in window.__firstSeen) && document.querySelector(selector)) window.__firstSeen[name] = now;
  }
}).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["class"] });
"""

# WCAG contrast of an element's text against the first opaque background behind it.
CONTRAST = """
(selector) => {
  const rgb = (value) => (value.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (node) => {
    for (; node && node.nodeType === 1; node = node.parentElement) {
      const style = getComputedStyle(node);
      const [r, g, b, a = 1] = rgb(style.backgroundColor);
      if (a >= 0.99 && style.backgroundColor !== "transparent") return [r, g, b];
    }
    return [255, 255, 255];
  };
  return [...document.querySelectorAll(selector)].filter((n) => n.offsetParent !== null && n.textContent.trim())
    .map((node) => {
      const fg = lum(rgb(getComputedStyle(node).color));
      const bg = lum(background(node));
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      return { text: node.textContent.trim().slice(0, 40), ratio };
    });
}
"""


@dataclass
class Stack:
    data_dir: Path
    urls: DatabaseUrls
    orchestrator: str
    demo_photo: str
    demo_mall: str
    photo_url: str  # a street photo the gateway fetches from the image server (allowed host)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str) -> Iterator[Stack]:
    from tests.conftest import SQL_DIR
    from unde.db.embedded import ensure_database, with_database
    from unde.db.migrate import apply_migrations

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    data_dir = tmp_path_factory.mktemp("console-stack")
    urls = DatabaseUrls(with_database(pg_admin_url, "console_production"),
                        with_database(pg_admin_url, "console_staging"))
    for target, name, url in (("production", "console_production", urls.production),
                              ("staging", "console_staging", urls.staging)):
        ensure_database(pg_admin_url, name)
        apply_migrations(url, target, SQL_DIR)  # type: ignore[arg-type]
    seed_dataset(urls.staging, data_dir, scale="small", street_photos=4, render_images=False,
                 image_base_url=devstack.url_of("image_server", OFFSET))
    photos = sorted(street_dir(data_dir).glob("*.jpg"))
    served = images_root(data_dir) / "street"
    served.mkdir(parents=True, exist_ok=True)
    shutil.copy(photos[1], served / photos[1].name)
    truth = __import__("json").loads((street_dir(data_dir) / "ground_truth.json").read_text())["photos"]
    mall = next(p["mall"] for p in truth if p["file"] == photos[0].name)
    devstack.up(urls, data_dir, ENV, offset=OFFSET)
    try:
        with httpx.Client(timeout=300.0) as client:
            index_via_function(client, devstack.url_of("indexer", OFFSET), headers=devstack.internal_headers(data_dir))
        yield Stack(data_dir, urls, devstack.url_of("orchestrator", OFFSET), photos[0].name, mall,
                    f"{devstack.url_of('image_server', OFFSET)}/street/{photos[1].name}")
    finally:
        devstack.down(data_dir)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def opened(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    """The pages a test opens: each one's last state is saved as `<test>-last-<n>.png`, pass or fail."""
    pages: list[Any] = []
    yield pages
    for number, page in enumerate(pages):
        if not page.is_closed():
            snap(page, f"{request.node.name}-last-{number}")
        page.context.close()


def new_page(browser: Any, stack: Stack, opened: list[Any], *, signed_in: bool = True, phone: bool = False) -> Any:
    viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    context = browser.new_context(viewport=viewport, device_scale_factor=1, is_mobile=phone, has_touch=phone)
    if signed_in:
        context.add_cookies([{"name": KEY_COOKIE, "value": APP_KEY, "url": stack.orchestrator,
                              "httpOnly": True, "sameSite": "Strict"}])
    context.add_init_script(FIRST_SEEN)
    page = context.new_page()
    page.set_default_timeout(RUN_TIMEOUT_MS)
    opened.append(page)
    return page


def snap(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_done(page: Any) -> str:
    page.wait_for_selector("#run-output[data-state='done'], #run-output[data-state='error']", state="attached")
    state = page.get_attribute("#run-output", "data-state")
    assert state == "done", page.inner_text("#degraded")
    return str(page.get_attribute("#run-output", "data-request-id"))


def final_cards(page: Any) -> list[dict[str, Any]]:
    return list(page.eval_on_selector_all(".card:not(.skeleton):not(.preliminary)", """cards => cards.map(c => ({
        price: c.querySelector('.price')?.textContent,
        stores: [...c.querySelectorAll('.store')].map(s => s.textContent),
        stocked: c.querySelectorAll('.store:not(.none):not(.more)').length,
        badge: c.querySelector('.badge')?.textContent, score: c.querySelector('.score')?.textContent,
        image: c.querySelector('img.thumb')?.naturalWidth ?? 0 }))"""))


def test_sign_in_then_the_stream_renders_chips_before_cards(browser: Any, stack: Stack, opened: list[Any]) -> None:
    page = new_page(browser, stack, opened, signed_in=False)
    response = page.goto(console_url(stack.orchestrator, stack.demo_photo, stack.demo_mall))
    assert response.status == 401 and page.is_visible("#key")
    page.fill("#key", "not-the-key")
    page.press("#key", "Enter")
    page.wait_for_selector("#denied", state="visible")
    page.fill("#key", APP_KEY)
    page.press("#key", "Enter")  # back at the same URL, signed in: the run starts by itself
    request_id = wait_done(page)

    seen = page.evaluate("window.__firstSeen")
    assert seen["scanning"] < seen["chip"] < seen["card"] and seen["skeleton"] < seen["card"] <= seen["ranked"], seen
    steps = page.eval_on_selector_all("#timeline li", "items => items.map(i => i.dataset.event)")
    assert steps[:2] == ["photo sent", "detected"] and steps[-1] == "done", steps
    first = {kind: steps.index(kind) for kind in ("candidates", "ranked")}
    assert first["candidates"] < first["ranked"], steps
    cards = final_cards(page)
    assert cards, "no product card"
    for card in cards:
        assert re.search(r"\d", card["price"]) and card["badge"] in ("Exact match", "Similar", "Same style"), card
        assert card["stores"], card
    assert any(card["stocked"] for card in cards), "no card names a store of the mall"
    assert any(card["image"] > 0 for card in cards), "no catalog photo loaded"
    assert page.locator(".chip").count() == page.locator(".garment").count() > 0
    assert "rerank_unavailable" not in (page.get_attribute("#degraded", "data-flags") or "")
    assert request_id and page.is_visible("#request-link a")
    snap(page, "run-desktop")


def test_keyboard_only_run_on_a_phone_sized_screen(browser: Any, stack: Stack, opened: list[Any]) -> None:
    page = new_page(browser, stack, opened, phone=True)
    page.goto(f"{stack.orchestrator}/console")
    page.wait_for_selector(f"#demo-photo option[value='{stack.demo_photo}']", state="attached")
    for _ in range(12):  # Tab from the top of the page to the demo photo choice
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "demo-photo":
            break
    assert page.evaluate("document.activeElement.id") == "demo-photo"
    page.keyboard.press("ArrowDown")  # the first demo photo; its mall is chosen with it
    assert page.input_value("#demo-photo") != "" and page.input_value("#mall") != ""
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "run":
            break
    page.keyboard.press("Enter")
    wait_done(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways on a phone"
    page.focus(".chip")
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash").startswith("#garment-")
    snap(page, "run-phone")


def test_past_request_view_shows_timings_calibration_matches_and_feedback(browser: Any, stack: Stack,
                                                                          opened: list[Any]) -> None:
    page = new_page(browser, stack, opened)
    page.goto(console_url(stack.orchestrator, stack.photo_url, stack.demo_mall))
    request_id = wait_done(page)
    with httpx.Client(timeout=30.0) as client:
        stored = client.post(f"{stack.orchestrator}/feedback", headers={"x-api-key": APP_KEY},
                             json={"request_id": request_id, "item_id": 0, "verdict": "wrong_item",
                                   "comment": "the sleeves are different"})
    page.click("#request-link a")
    page.wait_for_selector("#request-detail[data-state='loaded']")
    assert stored.status_code == 200, stored.text
    assert request_id in page.inner_text("#request-status")
    bars = page.eval_on_selector_all(".bar-row", "rows => rows.map(r => r.dataset.step)")
    assert bars == ["detection", "search", "tagging", "availability", "rerank", "total"]
    text = page.inner_text("#request-detail")
    for label in ("pgvector top-1", "pgvector margin", "Ximilar used for search", "Ximilar used for tags",
                  "candidates after availability", "wrong_item", "the sleeves are different"):
        assert label in text, label
    assert page.locator(".past-matches li").count() > 0
    assert page.evaluate("document.getElementById('past-request-photo').naturalWidth") > 0  # the logged photo URL
    assert page.locator("#request-detail .box").count() > 0
    assert page.locator(f"#recent-body a[href='/console?request={request_id}']").count() == 1
    snap(page, "past-request")


def test_controls_are_labelled_and_text_has_aa_contrast(browser: Any, stack: Stack, opened: list[Any]) -> None:
    page = new_page(browser, stack, opened)
    page.goto(console_url(stack.orchestrator, stack.demo_photo, stack.demo_mall))
    wait_done(page)
    unlabelled = page.eval_on_selector_all("input:not([type=hidden]), select, textarea",
                                           "nodes => nodes.filter(n => !n.labels.length).map(n => n.id)")
    assert unlabelled == []
    assert page.locator("main").count() == 1 and page.locator("nav[aria-label]").count() == 1
    assert page.locator("[role=status]").count() >= 1 and page.locator("#degraded[role=alert]").count() == 1
    assert page.eval_on_selector_all("img", "imgs => imgs.filter(i => i.src && !i.alt).length") == 0
    page.click(".facts-detail summary")
    low = [entry for selector in ("p", "li", "dt", "dd", "label", "legend", "h1", "h2", "h3", "h4", "a", "button",
                                  ".badge", ".chip", "th", "td", "summary")
           for entry in page.evaluate(CONTRAST, selector) if entry["ratio"] < 4.5]
    assert low == [], low


def test_a_degraded_run_shows_its_flags_plainly(browser: Any, stack: Stack, opened: list[Any]) -> None:
    assert devstack.stop_one(stack.data_dir, "llm_reranker")
    try:
        page = new_page(browser, stack, opened)
        page.goto(console_url(stack.orchestrator, stack.demo_photo, stack.demo_mall))
        wait_done(page)
        flag = page.locator("#degraded li[data-flag='rerank_unavailable']")
        assert flag.is_visible() and "reranker did not answer" in flag.inner_text()
        assert page.locator("#degraded li[data-flag='context_tags_unavailable']").is_visible()
        assert final_cards(page), "a degraded run still answers with cards"
        snap(page, "run-degraded")
    finally:
        devstack.start_one(stack.urls, stack.data_dir, "llm_reranker", ENV, OFFSET)
