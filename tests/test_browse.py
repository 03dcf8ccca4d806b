"""medground browse: the static site, driven in a real browser (Chromium via Selenium)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from medground import phantoms
from medground.browse import build_site, serve
from medground.pipeline import load_run_config, run

ARTIFACTS = Path(os.environ.get("MEDGROUND_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browse")
    phantoms.demo_dataset(root / "data", volumes=2, photos=3)
    run(load_run_config(root / "data" / "run.toml"), root / "run", use_ray=False, progress=False)
    # A few rejections to look at: drafts with a wrong side, as the rules would reject them.
    samples = [json.loads(line) for line in (root / "run" / "samples.jsonl").read_text().splitlines()]
    rejected = []
    for sample in samples[:3]:
        record = {
            **sample,
            "id": sample["id"] + "x",
            "query": "Locate the structure on the wrong side.",
            "rejection": {"stage": "rules", "reason": "laterality_mismatch", "detail": "test"},
        }
        rejected.append(json.dumps(record))
    (root / "run" / "rejected.jsonl").write_text("\n".join(rejected) + "\n")
    return root / "run"


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "samples.jsonl").read_text().splitlines() + (run_dir / "rejected.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; skipped with the reason where it cannot start (never in CI)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    options = Options()
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    try:
        if binary is None or driver_path is None:
            raise RuntimeError(
                "chromium or chromedriver not on PATH (Debian: apt-get install chromium chromium-driver)"
            )
        options.binary_location = binary
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as error:  # noqa: BLE001 - any failure to start is a reason to skip
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Chromium cannot be started here: {error}")
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout: float = 10.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def select(driver, facet: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    element = Select(driver.find_element("id", f"f-{facet}"))
    for option in element.options:
        if option.text.startswith(value + " ("):
            element.select_by_visible_text(option.text)
            return
    raise AssertionError(f"no {value!r} among {[o.text for o in element.options]}")


def test_site_files_are_self_contained(run_dir: Path) -> None:
    index = build_site(run_dir)
    html = index.read_text()
    assert "http://" not in html and "https://" not in html
    data = (index.parent / "data.js").read_text()
    assert data.startswith("window.MEDGROUND_DATA = ")
    rows = json.loads(data[len("window.MEDGROUND_DATA = ") :].rstrip().rstrip(";"))["samples"]
    assert len(rows) == len(records(run_dir))
    assert all((index.parent / row["th"]).is_file() for row in rows)
    # The stored images are untouched: boxes are drawn by the page, never into the files.
    for record in records(run_dir):
        assert (run_dir / record["image"]).is_file()


@pytest.mark.browser
def test_filters_counts_and_the_box_overlay_in_chromium(run_dir: Path, browser) -> None:
    index = build_site(run_dir)
    all_records = records(run_dir)
    browser.get(index.as_uri())
    wait_for(browser, lambda d: d.find_element("id", "count").text == str(len(all_records)))
    # Filter: one dataset, then rejected only; the visible count matches the records.
    select(browser, "dataset", "demo_skin")
    expected = sum(1 for r in all_records if r["dataset"] == "demo_skin")
    wait_for(browser, lambda d: d.find_element("id", "count").text == str(expected))
    assert len(browser.find_elements("css selector", ".card")) == min(expected, 48)
    browser.find_element("id", "reset").click()
    select(browser, "status", "rejected")
    wait_for(browser, lambda d: d.find_element("id", "count").text == "3")
    browser.find_element("id", "reset").click()
    search = browser.find_element("id", "search")
    search.send_keys("kidney")
    expected = sum(1 for r in all_records if "kidney" in r["query"].lower())
    wait_for(browser, lambda d: d.find_element("id", "count").text == str(expected))
    search.clear()
    browser.find_element("id", "reset").click()
    wait_for(browser, lambda d: d.find_element("id", "count").text == str(len(all_records)))

    # Detail view: the overlay's rectangles are the record's boxes, in image pixels.
    by_id = {r["id"]: r for r in all_records}
    cards = browser.find_elements("css selector", ".card")
    cards[5].click()
    wait_for(browser, lambda d: d.find_element("id", "detail").is_displayed())
    wait_for(browser, lambda d: "verification" in d.find_element("id", "detail-info").text.lower())
    svg = browser.find_element("id", "detail-svg")
    record = by_id[svg.get_attribute("data-id")]
    assert svg.get_dom_attribute("viewBox") == f"0 0 {record['width']} {record['height']}"
    rects = svg.find_elements("css selector", "rect.target")
    boxes = [[float(r.get_attribute(a)) for a in ("x", "y", "width", "height")] for r in rects]
    assert boxes == [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in (t["bbox_xyxy"] for t in record["targets"])]
    assert record["query"] in browser.find_element("id", "detail-info").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "browse-detail.png"))
    assert (ARTIFACTS / "browse-detail.png").stat().st_size > 10_000
    # Keyboard: next sample, then close.
    from selenium.webdriver.common.keys import Keys

    browser.find_element("tag name", "body").send_keys(Keys.ARROW_RIGHT)
    wait_for(
        browser,
        lambda d: d.find_element("id", "detail-svg").get_attribute("data-id") == cards[6].get_attribute("data-id"),
    )
    browser.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    wait_for(browser, lambda d: not d.find_element("id", "detail").is_displayed())
    browser.save_screenshot(str(ARTIFACTS / "browse-grid.png"))


@pytest.mark.browser
def test_served_over_loopback_with_fifty_thousand_samples(run_dir: Path, tmp_path: Path, browser) -> None:
    big = tmp_path / "big"
    shutil.copytree(run_dir, big, ignore=shutil.ignore_patterns("browse", "shards"))
    base = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    with (big / "samples.jsonl").open("w") as stream:
        for i in range(50_000):
            record = dict(base[i % len(base)])
            record["id"] = f"{record['id']}-{i}"
            stream.write(json.dumps(record) + "\n")
    index = build_site(big)
    server = serve(index.parent, big, port=0)
    try:
        browser.get(server.site_url)
        wait_for(browser, lambda d: d.find_element("id", "count").text == "50003", timeout=60)
        select(browser, "query_type", "multi_object")
        expected = sum(1 for i in range(50_000) if base[i % len(base)]["query_type"] == "multi_object")
        wait_for(browser, lambda d: d.find_element("id", "count").text == str(expected), timeout=60)
        browser.find_elements("css selector", ".card")[0].click()
        wait_for(browser, lambda d: "verification" in d.find_element("id", "detail-info").text.lower(), timeout=30)
        image = browser.find_element("id", "detail-image")
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
    finally:
        server.shutdown()
        server.server_close()
