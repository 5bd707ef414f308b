"""The pair explorer: every evaluated pair in a sortable, filterable table inside the report.

The table's values travel as one ``<script type="application/json">`` block (escaped by
:func:`pairlab.reports.render.script_json`) and :data:`EXPLORER_JS` turns it into
table rows. The full texts (about 3 KB per UltraFeedback pair, so 6 MB for 2,000
pairs) travel gzip-compressed and base64-encoded in a second data block and are
inflated in the browser with ``DecompressionStream``: 2,000 real UltraFeedback pairs
(6.3 MB of text) make a 3 MB report, and base64 cannot contain markup. Rows are paginated, so 2,000 pairs render as fast as 50;
clicking a row opens the full prompt / chosen / rejected text below it. Every piece of
data reaches the page through ``textContent``, never ``innerHTML``, so model or data
text cannot become markup. ``report.html#pair=ID`` opens that pair directly.
"""
from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import numpy as np
import pandas as pd

#: Table columns: (per_pair column, header, kind). kind: text, num or cat.
COLUMNS: list[tuple[str, str, str]] = [
    ("pair_id", "pair", "text"),
    ("source", "source", "cat"),
    ("rating_gap", "rating gap", "num"),
    ("chosen_tokens", "chosen tok", "num"),
    ("rejected_tokens", "rejected tok", "num"),
    ("chosen_reward", "chosen reward", "num"),
    ("rejected_reward", "rejected reward", "num"),
    ("margin", "margin", "num"),
    ("correct", "correct", "cat"),
]
TEXT_COLUMNS = ("prompt_text", "chosen", "rejected")
#: Characters kept per text field; UltraFeedback texts are far shorter, this only guards
#: the file size against pathological rows (the cut is marked in the text).
MAX_TEXT_CHARS = 20_000


def _rounded(values: pd.Series) -> list[Any]:
    """Floats to 4 significant digits (the table shows 3) to keep the embedded JSON small."""
    arr = pd.to_numeric(values, errors="coerce").to_numpy(float)
    out: list[Any] = []
    for v in arr:
        if not np.isfinite(v):
            out.append(None)
        elif float(v).is_integer():
            out.append(int(v))
        else:
            out.append(float(f"{v:.4g}"))
    return out


def _outcome(per_pair: pd.DataFrame) -> list[str]:
    """yes / no / tie: ties (margin exactly 0) are neither right nor wrong."""
    correct = per_pair["correct"].astype(bool).to_numpy()
    tie = per_pair["tie"].astype(bool).to_numpy() if "tie" in per_pair else np.zeros(len(per_pair), bool)
    return np.where(tie, "tie", np.where(correct, "yes", "no")).tolist()


def _clip(text: Any, limit: int) -> str:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    text = str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… {len(text) - limit:,} more characters not embedded in the report]"


def explorer_data(per_pair: pd.DataFrame, max_text_chars: int = MAX_TEXT_CHARS) -> dict[str, Any]:
    """The explorer's JSON payload: column specs, one value row and one text row per pair."""
    columns, values = [], []
    for key, label, kind in COLUMNS:
        if key == "correct":
            col = _outcome(per_pair)
        elif key not in per_pair:
            continue
        elif kind == "num":
            col = _rounded(per_pair[key])
        else:
            col = per_pair[key].astype("string").fillna("").tolist()
        columns.append({"key": key, "label": label, "kind": kind})
        values.append(col)
    rows = [list(r) for r in zip(*values)] if values else []
    return {"columns": columns, "rows": rows, "text_labels": ["prompt", "chosen", "rejected"],
            "has_text": any(c in per_pair for c in TEXT_COLUMNS)}


def explorer_texts(per_pair: pd.DataFrame, max_text_chars: int = MAX_TEXT_CHARS) -> str:
    """[prompt, chosen, rejected] per pair as JSON, gzipped (mtime 0: same input, same bytes), base64."""
    texts = [[_clip(v, max_text_chars) for v in triple] for triple in zip(
        *(per_pair[c] if c in per_pair else [None] * len(per_pair) for c in TEXT_COLUMNS))]
    raw = json.dumps(texts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def decode_texts(payload: str) -> list[list[str]]:
    """Inverse of :func:`explorer_texts` (what the browser does; used by tests and tools)."""
    return json.loads(gzip.decompress(base64.b64decode(payload)).decode("utf-8"))


# Plain ES5-level JavaScript, no libraries, no network. It reads #explorer-data and fills
# #explorer. Kept in Python (not a template) so its CSP hash is computed on exactly the
# bytes the page carries.
EXPLORER_JS = r"""
(function () {
  "use strict";
  var root = document.getElementById("explorer");
  var source = document.getElementById("explorer-data");
  if (!root || !source) { return; }
  var data = JSON.parse(source.textContent);
  var cols = data.columns, rows = data.rows;
  var texts = null, textProblem = null;  // filled by decodeTexts()
  var col = {};
  cols.forEach(function (c, i) { col[c.key] = i; });
  var state = { sort: col.margin, dir: -1, page: 0, size: 50, source: "", outcome: "", query: "" };
  var open = {};
  var order = [];
  var haystack = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function fmt(v, kind) {
    if (v === null || v === undefined || v === "") { return kind === "num" ? "\u2013" : ""; }
    if (kind === "num" && typeof v === "number" && !Number.isInteger(v)) {
      return Math.abs(v) >= 1000 ? v.toFixed(0) : String(Number(v.toPrecision(3)));
    }
    return String(v);
  }

  // ---- controls
  var controls = el("div", "ex-controls");
  function labelled(text, input) {
    var label = el("label", null, text + " ");
    label.appendChild(input);
    controls.appendChild(label);
    return input;
  }
  var search = labelled("search", el("input"));
  search.type = "search";
  search.placeholder = "text, pair id or source";
  var sourceSel = null;
  if (col.source !== undefined) {
    sourceSel = labelled("source", el("select"));
    var seen = {};
    rows.forEach(function (r) { seen[r[col.source]] = true; });
    [""].concat(Object.keys(seen).sort()).forEach(function (s) {
      var opt = el("option", null, s === "" ? "all" : s);
      opt.value = s;
      sourceSel.appendChild(opt);
    });
  }
  var outcomeSel = labelled("correct", el("select"));
  [["", "all"], ["yes", "correct"], ["no", "wrong"], ["tie", "tie"]].forEach(function (o) {
    var opt = el("option", null, o[1]);
    opt.value = o[0];
    outcomeSel.appendChild(opt);
  });
  var sizeSel = labelled("rows", el("select"));
  [25, 50, 100, 250].forEach(function (n) {
    var opt = el("option", null, n);
    opt.value = String(n);
    if (n === state.size) { opt.selected = true; }
    sizeSel.appendChild(opt);
  });
  root.appendChild(controls);

  var status = el("p", "ex-status");
  status.setAttribute("aria-live", "polite");
  root.appendChild(status);

  // ---- table
  var wrap = el("div", "scroll");
  var table = el("table", "ex-table");
  var thead = el("thead");
  var headRow = el("tr");
  var headers = cols.map(function (c, i) {
    var th = el("th");
    th.setAttribute("scope", "col");
    var button = el("button", "ex-sort", c.label);
    button.type = "button";
    button.addEventListener("click", function () {
      if (state.sort === i) { state.dir = -state.dir; } else { state.sort = i; state.dir = c.kind === "num" ? -1 : 1; }
      update(false);
    });
    th.appendChild(button);
    headRow.appendChild(th);
    return th;
  });
  thead.appendChild(headRow);
  table.appendChild(thead);
  var tbody = el("tbody");
  table.appendChild(tbody);
  wrap.appendChild(table);
  root.appendChild(wrap);

  var pager = el("div", "ex-pager");
  var prev = el("button", null, "\u2039 previous");
  var next = el("button", null, "next \u203a");
  var pageLabel = el("span");
  prev.type = next.type = "button";
  pager.appendChild(prev);
  pager.appendChild(pageLabel);
  pager.appendChild(next);
  root.appendChild(pager);

  // ---- filtering and sorting
  function matches(i) {
    var r = rows[i];
    if (state.source && r[col.source] !== state.source) { return false; }
    if (state.outcome && r[col.correct] !== state.outcome) { return false; }
    if (state.query) {
      if (!haystack) {
        haystack = rows.map(function (row, j) {
          return (row.join(" ") + " " + ((texts && texts[j]) || []).join(" ")).toLowerCase();
        });
      }
      if (haystack[i].indexOf(state.query) < 0) { return false; }
    }
    return true;
  }
  function compare(a, b) {
    var x = rows[a][state.sort], y = rows[b][state.sort];
    var xe = x === null || x === "", ye = y === null || y === "";
    if (xe || ye) { return xe === ye ? a - b : (xe ? 1 : -1); }  // blanks last either way
    if (x < y) { return -state.dir; }
    if (x > y) { return state.dir; }
    return a - b;
  }
  function update(keepPage) {
    order = [];
    for (var i = 0; i < rows.length; i++) { if (matches(i)) { order.push(i); } }
    if (state.sort !== undefined) { order.sort(compare); }
    if (!keepPage) { state.page = 0; }
    render();
  }

  // ---- rendering (only the current page is in the DOM)
  function detailRow(i) {
    var tr = el("tr", "ex-detail");
    var td = el("td");
    td.colSpan = cols.length;
    var box = el("div", "ex-texts");
    (data.text_labels || []).forEach(function (label, k) {
      var part = el("section", "ex-text ex-" + label);
      part.appendChild(el("h4", null, label));
      var body = textProblem || (texts === null ? "loading text\u2026" :
        ((texts[i] || [])[k] || "(no text in per_pair.parquet)"));
      part.appendChild(el("pre", null, body));
      box.appendChild(part);
    });
    td.appendChild(box);
    tr.appendChild(td);
    return tr;
  }
  function render() {
    var pages = Math.max(1, Math.ceil(order.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * state.size, end = Math.min(order.length, start + state.size);
    var frag = document.createDocumentFragment();
    for (var k = start; k < end; k++) {
      var i = order[k];
      var tr = el("tr", "ex-row ex-" + rows[i][col.correct]);
      tr.tabIndex = 0;
      tr.setAttribute("data-index", String(i));
      tr.setAttribute("aria-expanded", open[i] ? "true" : "false");
      cols.forEach(function (c, j) {
        tr.appendChild(el("td", c.kind === "num" ? "n" : null, fmt(rows[i][j], c.kind)));
      });
      frag.appendChild(tr);
      if (open[i]) { frag.appendChild(detailRow(i)); }
    }
    tbody.textContent = "";
    tbody.appendChild(frag);
    headers.forEach(function (th, j) {
      th.setAttribute("aria-sort", j === state.sort ? (state.dir > 0 ? "ascending" : "descending") : "none");
    });
    status.textContent = order.length
      ? "pairs " + (start + 1) + "\u2013" + end + " of " + order.length +
        (order.length < rows.length ? " (filtered from " + rows.length + ")" : "") + "; click a row for its text"
      : "no pairs match the filters (" + rows.length + " in all)";
    pageLabel.textContent = " page " + (state.page + 1) + " / " + pages + " ";
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
  }
  function toggle(tr) {
    var i = Number(tr.getAttribute("data-index"));
    open[i] = !open[i];
    render();
  }

  // ---- events
  tbody.addEventListener("click", function (ev) {
    var tr = ev.target.closest ? ev.target.closest("tr.ex-row") : null;
    if (tr) { toggle(tr); }
  });
  tbody.addEventListener("keydown", function (ev) {
    if ((ev.key === "Enter" || ev.key === " ") && ev.target.classList.contains("ex-row")) {
      ev.preventDefault();
      toggle(ev.target);
    }
  });
  var timer = null;
  search.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.query = search.value.trim().toLowerCase(); update(false); }, 150);
  });
  if (sourceSel) { sourceSel.addEventListener("change", function () { state.source = sourceSel.value; update(false); }); }
  outcomeSel.addEventListener("change", function () { state.outcome = outcomeSel.value; update(false); });
  sizeSel.addEventListener("change", function () { state.size = Number(sizeSel.value); update(false); });
  prev.addEventListener("click", function () { state.page -= 1; render(); });
  next.addEventListener("click", function () { state.page += 1; render(); });

  // report.html#pair=ID opens that pair (clearing filters that would hide it).
  function openFromHash() {
    var m = /^#pair=(.+)$/.exec(window.location.hash);
    if (!m) { return; }
    var id = decodeURIComponent(m[1]);
    var i = -1;
    for (var j = 0; j < rows.length; j++) { if (String(rows[j][col.pair_id]) === id) { i = j; break; } }
    if (i < 0) { return; }
    if (order.indexOf(i) < 0) {
      state.source = state.outcome = state.query = "";
      search.value = "";
      outcomeSel.value = "";
      if (sourceSel) { sourceSel.value = ""; }
      update(false);
    }
    state.page = Math.floor(order.indexOf(i) / state.size);
    open[i] = true;
    render();
    var tr = tbody.querySelector('tr[data-index="' + i + '"]');
    if (tr && tr.scrollIntoView) { tr.scrollIntoView(); }
  }
  window.addEventListener("hashchange", openFromHash);

  // The texts: base64 -> gzip -> JSON, inflated by the browser (no library, no network).
  function decodeTexts() {
    var node = document.getElementById("explorer-text");
    function done(problem, decoded) {
      textProblem = problem;
      texts = decoded || [];
      haystack = null;  // rebuild the search index with the texts
      update(true);
      root.setAttribute("data-text", problem ? "failed" : "ready");
    }
    if (!node) { done(null, []); return; }
    if (typeof DecompressionStream === "undefined" || typeof Response === "undefined") {
      done("This browser cannot inflate the embedded text (no DecompressionStream); per_pair.parquet has it.");
      return;
    }
    try {
      var bin = atob(node.textContent.trim());
      var bytes = new Uint8Array(bin.length);
      for (var b = 0; b < bin.length; b++) { bytes[b] = bin.charCodeAt(b); }
      new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text()
        .then(function (json) { done(null, JSON.parse(json)); })
        .catch(function (err) { done("Could not read the embedded text: " + err); });
    } catch (err) {
      done("Could not read the embedded text: " + err);
    }
  }

  update(false);
  openFromHash();
  root.setAttribute("data-ready", String(rows.length));
  decodeTexts();
})();
""".strip()
