"""``medground browse``: a self-contained static site to look at a run's samples.

The site (``index.html``, ``style.css``, ``app.js`` from ``presets/browse/``, plus the
generated ``data.js``, ``details/*.js`` and ``thumbs/``) uses no CDN and no build step and
works from ``file://`` as well as from a loopback server: data comes in script files, not
fetched JSON. Boxes are drawn as SVG over the images, never burnt into them.

``data.js`` holds one compact row per sample (facet indices, query, thumbnail, boxes) so
that filtering and paging stay fast with 50,000 samples; the full records are split into
chunks of ``CHUNK`` loaded when a detail view opens. Volume samples (their image a NIfTI
volume, their boxes 3D) are not shown: the site draws 2D boxes over 2D images.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import mimetypes
import os
import shutil
import threading
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import Any

from medground.records import dumps, is_volume_sample
from medground.runfolder import REJECTED, SAMPLES, RunFolder, atomic_write

__all__ = ["CHUNK", "SiteServer", "build_site", "serve"]

CHUNK = 500
THUMB = 256
_STAGES = ("synthesis", "format", "rules", "visual")
_FACETS = ("status", "dataset", "modality", "label", "query_type", "split", "stage", "reason")


def _records(run: Path) -> list[dict[str, Any]]:
    folder = RunFolder(run)
    folder.require(SAMPLES, reader="browse")
    records = []
    for name, status in ((SAMPLES, "accepted"), (REJECTED, "rejected")):
        for _, record in folder.records(name):
            if is_volume_sample(record):
                continue
            record["_status"] = status
            records.append(record)
    return records


def _thumbnail(source: Path, target: Path) -> None:
    from PIL import Image

    with Image.open(source) as image:
        image.thumbnail((THUMB, THUMB))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    atomic_write(target, buffer.getvalue())


class _Facets:
    """Each facet's distinct values in order of first appearance; rows refer to them by index."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {facet: [] for facet in _FACETS}
        self._index_of: dict[str, dict[Any, int]] = {facet: {} for facet in _FACETS}
        for facet, fixed in (("status", ("accepted", "rejected")), ("stage", _STAGES)):
            for value in fixed:
                self.code(facet, value)

    def code(self, facet: str, value: Any) -> int:
        """The index of ``value`` (``None`` as ``"(none)"``) among ``facet``'s values, added when new."""
        key = "(none)" if value is None else value
        index_of = self._index_of[facet]
        if key not in index_of:
            index_of[key] = len(self.values[facet])
            self.values[facet].append(key)
        return index_of[key]


def _thumb(image: str, run: Path, out: Path, images_from_site: Path) -> str:
    """The site-relative path of ``image``'s thumbnail, written unless already there; the
    image itself when the run does not hold it."""
    source = run / image
    if not source.is_file():
        return (images_from_site / image).as_posix()
    name = f"thumbs/{hashlib.sha1(image.encode()).hexdigest()[:16]}.png"
    if not (out / name).is_file():
        _thumbnail(source, out / name)
    return name


def _row(record: dict[str, Any], position: int, facets: _Facets, thumb: str, images_from_site: Path) -> dict[str, Any]:
    """The compact ``data.js`` row of the ``position``-th record."""
    code = facets.code
    rejection = record.get("rejection") or {}
    chunk, offset = divmod(position, CHUNK)
    image = record["image"]
    return {
        "id": record["id"],
        "s": code("status", record["_status"]),
        "d": code("dataset", record["dataset"]),
        "m": code("modality", record["modality"]),
        "l": sorted({code("label", t["label"]) for t in record["targets"]}),
        "t": code("query_type", record["query_type"]),
        "p": code("split", record.get("split")),
        "g": code("stage", rejection.get("stage")) if rejection else -1,
        "r": code("reason", rejection.get("reason")) if rejection else -1,
        "q": record["query"],
        "th": thumb,
        "im": (images_from_site / image).as_posix(),
        "w": record["width"],
        "h": record["height"],
        "b": [t["bbox_xyxy"] for t in record["targets"]],
        "x": [d["bbox_xyxy"] for d in record.get("distractors", []) if d.get("bbox_xyxy")],
        "c": chunk,
        "k": offset,
    }


def _write_details(out: Path, records: list[dict[str, Any]]) -> None:
    """Replaces ``details/`` with the full records, ``CHUNK`` to a script file."""
    details = out / "details"
    if details.is_dir():
        shutil.rmtree(details)
    for number, start in enumerate(range(0, len(records), CHUNK)):
        chunk_records = [
            {k: v for k, v in record.items() if k != "_status"} for record in records[start : start + CHUNK]
        ]
        payload = dumps(chunk_records, separators=(",", ":"))
        atomic_write(details / f"{number:04d}.js", f"window.medgroundChunk({number}, {payload});\n".encode())


def build_site(run: Path | str, out: Path | str | None = None) -> Path:
    """Writes the site for a run folder; returns the path of ``index.html``.

    Raises:
        FileNotFoundError: ``run`` holds no ``samples.jsonl``.
    """
    run = Path(run).resolve()
    out = Path(out).resolve() if out is not None else run / "browse"
    records = _records(run)
    out.mkdir(parents=True, exist_ok=True)
    assets = resources.files("medground") / "presets" / "browse"
    for name in ("index.html", "style.css", "app.js"):
        atomic_write(out / name, (assets / name).read_bytes())
    images_from_site = Path(os.path.relpath(run, out))

    facets = _Facets()
    thumbs: dict[str, str] = {}
    rows = []
    for position, record in enumerate(records):
        image = record["image"]
        if image not in thumbs:
            thumbs[image] = _thumb(image, run, out, images_from_site)
        rows.append(_row(record, position, facets, thumbs[image], images_from_site))
    manifest = RunFolder(run).manifest()
    funnel = manifest.get("funnel") or {"drafts": len(records), "passed": {}, "accepted": len(rows), "rejected": {}}
    data = {
        "title": run.name,
        "funnel": funnel,
        "stages": ["format", "rules", "visual"],
        "facets": facets.values,
        "chunk_size": CHUNK,
        "samples": rows,
    }
    atomic_write(out / "data.js", ("window.MEDGROUND_DATA = " + dumps(data, separators=(",", ":")) + ";\n").encode())
    _write_details(out, records)
    return out / "index.html"


class SiteServer(http.server.ThreadingHTTPServer):
    """The loopback server of a site; ``site_url`` is the address of its ``index.html``.

    It answers only for ``files`` (URL path → the file, and the folder it must stay in once
    symlinks are followed) and only to requests whose ``Host`` is one of ``hosts``.
    """

    site_url: str = ""
    files: dict[str, tuple[Path, Path]]
    hosts: frozenset[str] = frozenset()


#: The site's own files: build_site writes them, and data.js names the thumbnails and images.
_SITE_FILES = ("index.html", "style.css", "app.js", "data.js")
_DATA_PREFIX = "window.MEDGROUND_DATA = "


def _rows(site: Path) -> list[Any]:
    """The rows of a site's ``data.js``.

    Raises:
        ValueError: ``site`` holds no ``data.js`` that ``build_site`` wrote.
    """
    data = site / "data.js"
    try:
        text = data.read_text(encoding="utf-8")
        rows = json.loads(text.removeprefix(_DATA_PREFIX).rstrip().rstrip(";"))["samples"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{data}: not a site written by medground browse ({error})") from None
    if not text.startswith(_DATA_PREFIX) or not isinstance(rows, list):
        raise ValueError(f"{data}: not a site written by medground browse")
    return rows


def _site_files(site: Path, run: Path, root: Path) -> dict[str, tuple[Path, Path]]:
    """URL path (from ``root``, the folder holding both the site and the run) → the file
    and the folder it must resolve into: the site's own files and detail chunks, and the
    thumbnails and run images that ``data.js`` points at. Nothing else under ``root``
    (other runs, keys next to the run, the run's own records) has a URL.

    Raises:
        ValueError: ``site`` holds no ``data.js`` that ``build_site`` wrote.
    """
    allowed: dict[Path, Path] = {site / name: site for name in _SITE_FILES}
    allowed.update({path: site / "details" for path in (site / "details").glob("[0-9][0-9][0-9][0-9].js")})
    folders = (site / "thumbs", run / "images")
    for row in _rows(site):
        for key in ("th", "im"):
            value = row.get(key) if isinstance(row, dict) else None
            if isinstance(value, str):
                path = Path(os.path.normpath(site / value))  # a row's path may climb out with ".."
                folder = next((f for f in folders if path.is_relative_to(f)), None)
                if folder is not None:
                    allowed[path] = folder
    real = {folder: folder.resolve() for folder in set(allowed.values())}
    files = {"/" + path.relative_to(root).as_posix(): (path, real[folder]) for path, folder in allowed.items()}
    files[_site_prefix(site, root)] = files[_site_prefix(site, root) + "index.html"]
    return files


def _site_prefix(site: Path, root: Path) -> str:
    """The URL path of the site's folder, ending in ``/``."""
    relative = site.relative_to(root).as_posix()
    return "/" if relative == "." else f"/{relative}/"


def serve(site: Path | str, run: Path | str | None = None, port: int = 8765, host: str = "127.0.0.1") -> SiteServer:
    """Serves a site on a loopback address in a background thread; returns the server
    (``shutdown()`` stops it) with ``site_url``.

    URLs are paths from the folder holding both the site and the run (so that the site's
    relative image paths resolve), but only the site's files and the run images it shows
    are served: anything else is 404, with no folder listings, whatever ``..``, percent
    encoding or symlink a request tries. A request must name this server in its ``Host``
    header (``127.0.0.1:PORT`` or ``localhost:PORT``), so that a web page whose domain is
    made to resolve to 127.0.0.1 (DNS rebinding) cannot read the site either.

    Raises:
        ValueError: the site is neither in the run folder nor next to it, or holds no
            ``data.js``.
    """
    site = Path(site).resolve()
    run = Path(run).resolve() if run is not None else site.parent
    root = Path(os.path.commonpath([site, run]))
    if root not in (run, run.parent):
        raise ValueError(
            f"to serve it, write the site inside the run folder or next to it (--out); "
            f"{site} and {run} only share {root}"
        )
    files = _site_files(site, run, root)
    server = SiteServer((host, port), _SiteHandler)
    server.files = files
    bound = server.server_address[1]
    names = {host.lower(), "localhost", "127.0.0.1"} if host in ("localhost", "127.0.0.1") else {host.lower()}
    # Browsers leave the port out of Host for port 80.
    server.hosts = frozenset({f"{name}:{bound}" for name in names} | (names if bound == 80 else set()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.site_url = f"http://{host}:{bound}{urllib.parse.quote(_site_prefix(site, root))}index.html"
    return server


class _SiteHandler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of the server's ``files``; everything else is refused."""

    server: SiteServer

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - the base class's name
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        host = self.headers.get("Host")
        if host is None:
            self.send_error(400, "no Host header")
            return
        if host.strip().lower() not in self.server.hosts:
            self.send_error(421, "this server answers only to its own loopback address")
            return
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        try:
            data = path.read_bytes()
        except OSError:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _file(self) -> Path | None:
        """The file a request names, if it is one the site may show and it still resolves,
        symlinks followed, into its folder."""
        url = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        entry = self.server.files.get(url)
        if entry is None:
            return None
        path, folder = entry
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):  # absent, or a symlink loop
            return None
        return real if real.is_relative_to(folder) and real.is_file() else None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass
