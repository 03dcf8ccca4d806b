/* medground browser: plain JavaScript, works from file:// and from a loopback server.
 * Data: window.MEDGROUND_DATA (data.js) holds one compact row per sample; full records
 * come in chunks (details/NNNN.js) loaded with script tags when a detail view opens. */
(function () {
  "use strict";
  var DATA = window.MEDGROUND_DATA;
  var FACETS = ["status", "dataset", "modality", "label", "query_type", "split", "stage", "reason"];
  var KEY = { status: "s", dataset: "d", modality: "m", label: "l", query_type: "t", split: "p", stage: "g", reason: "r" };
  var PAGE = 48;
  var SVG = "http://www.w3.org/2000/svg";
  var state = { filters: {}, text: "", page: 0, rows: [], detail: -1, zoom: 1, distractors: false };
  var chunks = {};
  var waiting = {};

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function matches(row, skip) {
    for (var i = 0; i < FACETS.length; i++) {
      var facet = FACETS[i];
      if (facet === skip || state.filters[facet] === undefined) continue;
      var value = row[KEY[facet]];
      if (Array.isArray(value) ? value.indexOf(state.filters[facet]) < 0 : value !== state.filters[facet]) return false;
    }
    return !state.text || row.q.toLowerCase().indexOf(state.text) >= 0;
  }

  function boxes(svg, row, withDistractors) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute("viewBox", "0 0 " + row.w + " " + row.h);
    svg.setAttribute("preserveAspectRatio", "none");
    var groups = [["target", row.b]];
    if (withDistractors) groups.push(["distractor", row.x]);
    groups.forEach(function (group) {
      group[1].forEach(function (b) {
        var rect = document.createElementNS(SVG, "rect");
        rect.setAttribute("class", group[0]);
        rect.setAttribute("x", b[0]);
        rect.setAttribute("y", b[1]);
        rect.setAttribute("width", b[2] - b[0]);
        rect.setAttribute("height", b[3] - b[1]);
        svg.appendChild(rect);
      });
    });
  }

  function card(row, position) {
    var node = el("div", { "class": "card" + (row.s === 1 ? " rejected" : ""), tabindex: "0", "data-id": row.id, "data-position": position });
    var frame = el("div", { "class": "frame" });
    frame.appendChild(el("img", { src: row.th, alt: row.q, loading: "lazy", width: row.w, height: row.h }));
    var svg = document.createElementNS(SVG, "svg");
    boxes(svg, row, state.distractors);
    frame.appendChild(svg);
    node.appendChild(frame);
    var caption = el("div", { "class": "caption" });
    caption.appendChild(el("div", { "class": "type" }, DATA.facets.query_type[row.t] + " · " + DATA.facets.dataset[row.d]));
    caption.appendChild(el("div", { "class": "query" }, row.q));
    if (row.s === 1) caption.appendChild(el("div", { "class": "why" }, DATA.facets.stage[row.g] + ": " + DATA.facets.reason[row.r]));
    node.appendChild(caption);
    node.addEventListener("click", function () { openDetail(position); });
    node.addEventListener("keydown", function (e) { if (e.key === "Enter") openDetail(position); });
    return node;
  }

  function refresh() {
    state.rows = [];
    for (var i = 0; i < DATA.samples.length; i++) if (matches(DATA.samples[i])) state.rows.push(DATA.samples[i]);
    // Counts per facet value, given every other filter.
    FACETS.forEach(function (facet) {
      var counts = {};
      DATA.samples.forEach(function (row) {
        if (!matches(row, facet)) return;
        var values = Array.isArray(row[KEY[facet]]) ? row[KEY[facet]] : [row[KEY[facet]]];
        values.forEach(function (v) { counts[v] = (counts[v] || 0) + 1; });
      });
      var select = $("f-" + facet);
      var total = 0;
      for (var v in counts) total += counts[v];
      select.innerHTML = "";
      select.appendChild(el("option", { value: "" }, "all (" + total + ")"));
      DATA.facets[facet].forEach(function (name, index) {
        if (name === null) return;
        var option = el("option", { value: String(index) }, name + " (" + (counts[index] || 0) + ")");
        if (state.filters[facet] === index) option.selected = true;
        select.appendChild(option);
      });
    });
    var pages = Math.max(1, Math.ceil(state.rows.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    $("count").textContent = String(state.rows.length);
    $("page-info").textContent = "· page " + (state.page + 1) + " of " + pages;
    var grid = $("grid");
    grid.innerHTML = "";
    var start = state.page * PAGE;
    state.rows.slice(start, start + PAGE).forEach(function (row, i) { grid.appendChild(card(row, start + i)); });
  }

  function funnel() {
    var f = DATA.funnel;
    var box = $("funnel");
    var steps = [["drafts", f.drafts]].concat(DATA.stages.map(function (s) { return [s, f.passed[s] || 0]; }));
    steps.push(["accepted", f.accepted]);
    steps.forEach(function (step) {
      box.appendChild(el("div", {}, step[0]));
      var bar = el("div", { "class": "bar", "data-step": step[0] });
      bar.style.width = (f.drafts ? 100 * step[1] / f.drafts : 0) + "%";
      box.appendChild(bar);
      box.appendChild(el("div", { "class": "n" }, String(step[1])));
      var reasons = (f.rejected || {})[step[0]];
      if (reasons) {
        var text = Object.keys(reasons).map(function (r) { return r + " " + reasons[r]; }).join(", ");
        box.appendChild(el("div", {}, ""));
        box.appendChild(el("div", { "class": "reasons" }, "rejected: " + text));
      }
    });
  }

  function loadChunk(index, done) {
    if (chunks[index]) return done(chunks[index]);
    (waiting[index] = waiting[index] || []).push(done);
    if (waiting[index].length > 1) return;
    var script = el("script", { src: "details/" + ("000" + index).slice(-4) + ".js" });
    document.body.appendChild(script);
  }
  window.medgroundChunk = function (index, records) {
    chunks[index] = records;
    (waiting[index] || []).forEach(function (done) { done(records); });
    delete waiting[index];
  };

  function table(pairs) {
    var t = el("table");
    pairs.forEach(function (pair) {
      var tr = el("tr");
      tr.appendChild(el("td", {}, pair[0]));
      tr.appendChild(el("td", {}, typeof pair[1] === "object" && pair[1] !== null ? JSON.stringify(pair[1]) : String(pair[1])));
      t.appendChild(tr);
    });
    return t;
  }

  function openDetail(position) {
    if (position < 0 || position >= state.rows.length) return;
    state.detail = position;
    var row = state.rows[position];
    $("detail").hidden = false;
    $("detail-position").textContent = (position + 1) + " / " + state.rows.length;
    var image = $("detail-image");
    image.src = row.im;
    image.width = row.w;
    image.height = row.h;
    var viewport = $("detail-viewport");
    // Open at the zoom that fits the viewport; +/- and ctrl-wheel zoom from there.
    setZoom(Math.min((viewport.clientWidth - 24) / row.w, (viewport.clientHeight - 24) / row.h));
    boxes($("detail-svg"), row, true);
    $("detail-svg").setAttribute("data-id", row.id);
    var info = $("detail-info");
    info.innerHTML = "";
    info.appendChild(el("h2", {}, row.q));
    loadChunk(row.c, function (records) {
      if (state.rows[state.detail] !== row) return;
      var record = records[row.k];
      info.appendChild(table([["id", record.id], ["status", row.s === 1 ? "rejected" : "accepted"], ["query type", record.query_type],
        ["dataset", record.dataset], ["case", record.case_id], ["patient", record.patient_id], ["split", record.split],
        ["view", record.view], ["image", record.image + " (" + record.width + "×" + record.height + ")"]]));
      if (record.rejection) {
        info.appendChild(el("h3", {}, "rejection"));
        info.appendChild(table([["stage", record.rejection.stage], ["reason", record.rejection.reason], ["detail", record.rejection.detail]]));
      }
      info.appendChild(el("h3", {}, "verification"));
      var stages = Object.keys(record.verification || {}).map(function (s) {
        var v = record.verification[s];
        return [s, (v.passed ? "passed" : "failed: " + v.reason) + (v.info ? " " + JSON.stringify(v.info) : "")];
      });
      info.appendChild(table(stages.length ? stages : [["-", "not verified"]]));
      info.appendChild(el("h3", {}, "targets"));
      record.targets.forEach(function (t) {
        info.appendChild(table([["label", t.label], ["component", t.component_id], ["bbox_xyxy", t.bbox_xyxy], ["area_px", t.area_px], ["bbox_3d", t.bbox_3d]]));
        info.appendChild(el("h3", {}, "cues"));
        info.appendChild(el("pre", {}, JSON.stringify(t.cues, null, 1)));
      });
      info.appendChild(el("h3", {}, "referring attributes"));
      info.appendChild(table(Object.keys(record.referring_attributes).map(function (k) { return [k, record.referring_attributes[k]]; })));
      info.appendChild(el("h3", {}, "distractors"));
      info.appendChild(table(record.distractors.map(function (d) { return [d.label + " " + d.component_id, d.values]; })));
      info.appendChild(el("h3", {}, "synthesis and provenance"));
      info.appendChild(el("pre", {}, JSON.stringify({ synthesis: record.synthesis, provenance: record.provenance }, null, 1)));
    });
    location.hash = "sample=" + encodeURIComponent(row.id);
  }

  function closeDetail() {
    $("detail").hidden = true;
    state.detail = -1;
    history.replaceState(null, "", location.pathname + location.search);
  }

  function setZoom(z) {
    var row = state.rows[state.detail];
    if (!row) return;
    state.zoom = Math.max(0.25, Math.min(32, z || 1));
    var stage = $("detail-stage");
    stage.style.width = Math.round(row.w * state.zoom) + "px";
    stage.style.height = Math.round(row.h * state.zoom) + "px";
    stage.setAttribute("data-zoom", state.zoom.toFixed(3));
  }

  function init() {
    $("run-title").textContent = DATA.title;
    funnel();
    FACETS.forEach(function (facet) {
      $("f-" + facet).addEventListener("change", function (e) {
        var v = e.target.value;
        if (v === "") delete state.filters[facet]; else state.filters[facet] = Number(v);
        state.page = 0;
        refresh();
      });
    });
    $("search").addEventListener("input", function (e) { state.text = e.target.value.trim().toLowerCase(); state.page = 0; refresh(); });
    $("show-distractors").addEventListener("change", function (e) { state.distractors = e.target.checked; refresh(); });
    $("reset").addEventListener("click", function () { state.filters = {}; state.text = ""; $("search").value = ""; state.page = 0; refresh(); });
    $("prev-page").addEventListener("click", function () { if (state.page > 0) { state.page--; refresh(); } });
    $("next-page").addEventListener("click", function () { state.page++; refresh(); });
    $("detail-prev").addEventListener("click", function () { openDetail(state.detail - 1); });
    $("detail-next").addEventListener("click", function () { openDetail(state.detail + 1); });
    $("detail-close").addEventListener("click", closeDetail);
    $("zoom-in").addEventListener("click", function () { setZoom(state.zoom * 1.5); });
    $("zoom-out").addEventListener("click", function () { setZoom(state.zoom / 1.5); });
    $("detail-viewport").addEventListener("wheel", function (e) {
      if (!e.ctrlKey) return;
      e.preventDefault();
      setZoom(state.zoom * (e.deltaY < 0 ? 1.2 : 1 / 1.2));
    }, { passive: false });
    document.addEventListener("keydown", function (e) {
      if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
      if (state.detail >= 0) {
        if (e.key === "ArrowRight") openDetail(state.detail + 1);
        else if (e.key === "ArrowLeft") openDetail(state.detail - 1);
        else if (e.key === "Escape") closeDetail();
        else if (e.key === "+" || e.key === "=") setZoom(state.zoom * 1.5);
        else if (e.key === "-") setZoom(state.zoom / 1.5);
      } else if (e.key === "ArrowRight") { state.page++; refresh(); }
      else if (e.key === "ArrowLeft" && state.page > 0) { state.page--; refresh(); }
    });
    refresh();
    var match = /sample=([^&]+)/.exec(location.hash);
    if (match) {
      var id = decodeURIComponent(match[1]);
      for (var i = 0; i < state.rows.length; i++) if (state.rows[i].id === id) { openDetail(i); break; }
    }
  }
  init();
})();
