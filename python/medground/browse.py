"""``medground browse``: a self-contained static site to look at a run's samples.

The site (``index.html``, ``style.css``, ``app.js`` from ``presets/browse/``, plus the
generated ``data.js``, ``details/*.js`` and ``thumbs/``) uses no CDN and no build step and
works from ``file://`` as well as from a loopback server: data comes in script files, not
fetched JSON. Boxes are drawn as SVG over the images, never burnt into them.

``data.js`` holds one compact row per sample (facet indices, query, thumbnail, boxes) so
that filtering and paging stay fast with 50,000 samples; the full records are split into
chunks of ``CHUNK`` loaded when a detail view opens.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import shutil
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from medground.records import dumps
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
    """The loopback server of a site; ``site_url`` is the address of its ``index.html``."""

    site_url: str = ""


def serve(site: Path | str, run: Path | str | None = None, port: int = 8765, host: str = "127.0.0.1") -> SiteServer:
    """Serves the folder holding both the site and the run (so the images resolve) on a
    loopback address in a background thread; returns the server (``shutdown()`` stops it)
    with ``site_url``."""
    site = Path(site).resolve()
    root = Path(os.path.commonpath([site, Path(run).resolve()])) if run is not None else site.parent
    if run is not None and root not in (Path(run).resolve(), Path(run).resolve().parent):
        raise ValueError(
            f"to serve it, write the site inside the run folder or next to it (--out); "
            f"{site} and {run} only share {root}"
        )
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = SiteServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    relative = site.relative_to(root).as_posix()
    server.site_url = f"http://{host}:{server.server_address[1]}/{relative}/index.html"
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass
