"""medground browse: the static site, driven in a real browser (Chromium via Selenium)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from medground import phantoms
from medground.browse import build_site, serve
from medground.cli import main
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


def _get(port: int, path: str, host: str | None = "default") -> tuple[int, bytes, str]:
    """Status, body and Content-Type of a GET sent as written (no normalising of ``..``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            connection.putheader("Host", f"127.0.0.1:{port}" if host == "default" else host)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        connection.close()


def _site_rows(site: Path) -> list[dict]:
    return json.loads((site / "data.js").read_text()[len("window.MEDGROUND_DATA = ") :].rstrip().rstrip(";"))["samples"]


def test_serve_answers_only_for_the_site_and_its_images(run_dir: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_copy = runs / "run"
    shutil.copytree(run_dir, run_copy, ignore=shutil.ignore_patterns("browse", "shards"))
    (runs / "id_rsa").write_text("PRIVATE KEY")  # next to the run: the folder a sibling site shares with it
    (runs / "other").mkdir()
    (runs / "other" / "samples.jsonl").write_text("{}\n")
    (run_copy / "notes.txt").write_text("not part of the site")
    stray = sorted((run_copy / "images").rglob("*.png"))[0].with_name("stray.png")
    shutil.copy(sorted((run_copy / "images").rglob("*.png"))[0], stray)  # an image no sample shows
    index = build_site(run_copy, runs / "site")
    rows = _site_rows(index.parent)
    image = next(row["im"] for row in rows)
    linked = next(row["im"] for row in rows if row["im"] != image)
    (index.parent / linked).unlink()
    (index.parent / linked).symlink_to(runs / "id_rsa")  # a shown image that now leads out of images/
    server = serve(index.parent, run_copy, port=0)
    port = server.server_address[1]
    try:
        assert server.site_url == f"http://127.0.0.1:{port}/site/index.html"
        status, body, kind = _get(port, "/site/index.html")
        assert status == 200 and kind.startswith("text/html") and b"app.js" in body
        assert _get(port, "/site/")[0] == 200 and _get(port, "/site/data.js")[0] == 200
        assert _get(port, "/site/details/0000.js")[0] == 200
        assert _get(port, "/site/" + rows[0]["th"])[0] == 200
        status, body, kind = _get(port, "/" + os.path.normpath("site/" + image))
        assert status == 200 and kind == "image/png" and body == (index.parent / image).read_bytes()
        # Percent-encoded names are decoded once: the same image.
        assert _get(port, "/" + os.path.normpath("site/" + image).replace("images", "%69mages"))[0] == 200
        # Nothing else: keys and other runs beside the run, its records, stray images,
        # listings, traversal however spelt, a shown image that leads out through a symlink.
        for path in (
            "/id_rsa",
            "/other/samples.jsonl",
            "/run/samples.jsonl",
            "/run/notes.txt",
            "/run/run.json",
            "/" + stray.relative_to(runs).as_posix(),
            "/" + os.path.normpath("site/" + linked),
            "/",
            "/run/",
            "/run/images/",
            "/site/thumbs/",
            "/site/details/",
            "/site/../id_rsa",
            "/site/%2e%2e/id_rsa",
            "/site/..%2fid_rsa",
            "/site/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
            "/site/thumbs/../../id_rsa",
            "//id_rsa",
            "/%2fetc/passwd",
            "/site/index.html/..",
            "/site/index.html%00",
        ):
            status, body, _ = _get(port, path)
            assert status == 404 and b"PRIVATE" not in body, path
        # The Host header names this server, or the request is refused (DNS rebinding).
        assert _get(port, "/site/index.html", host=f"localhost:{port}")[0] == 200
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", "127.0.0.1"):
            assert _get(port, "/site/index.html", host=host)[0] in (400, 421), host
        assert _get(port, "/site/index.html", host=None)[0] == 400
    finally:
        server.shutdown()
        server.server_close()


def test_serve_a_site_inside_its_run(run_dir: Path, tmp_path: Path) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(run_dir, run_copy, ignore=shutil.ignore_patterns("browse", "shards"))
    index = build_site(run_copy)
    server = serve(index.parent, run_copy, port=0)
    port = server.server_address[1]
    try:
        assert server.site_url == f"http://127.0.0.1:{port}/browse/index.html"
        image = _site_rows(index.parent)[0]["im"]
        assert image.startswith("../images/") and _get(port, "/" + os.path.normpath("browse/" + image))[0] == 200
        for path in ("/samples.jsonl", "/manifest.json", "/", "/images/", "/browse/../samples.jsonl"):
            assert _get(port, path)[0] == 404, path
    finally:
        server.shutdown()
        server.server_close()


def test_browse_into_a_folder_it_cannot_make_is_a_clean_error(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(main, ["browse", str(run_dir), "--out", str(tmp_path / "file" / "site")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"Error: {tmp_path / 'file' / 'site'}: Not a directory" in result.output
