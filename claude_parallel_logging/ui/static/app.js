// cpl viewer: waterfall, jump-to-transcript, load more, live updates. No framework, no eval,
// no inline handlers. Stored text only ever reaches the DOM through textContent / title;
// HTML fragments come from this server, which escaped every stored text in them.
(function () {
  "use strict";
  var POLL_MS = 1500;
  var MAX_LOADS = 200;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmtMs(ms) {
    if (ms < 1000) return Math.round(ms) + " ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }

  // ---- waterfall ------------------------------------------------------------------------
  function renderWaterfall() {
    var box = document.getElementById("waterfall");
    var src = document.getElementById("wf-data");
    if (!box || !src) return;
    var data = JSON.parse(src.textContent || "{}");
    var span = Math.max(data.span || 0, 1);
    box.textContent = "";
    if (!data.bars || !data.bars.length) {
      box.appendChild(el("p", "empty", "No steps or tool executions logged."));
      return;
    }
    var axis = el("div", "wf-axis");
    for (var i = 0; i <= 4; i++) {
      var t = el("span", "wf-tick", fmtMs(span * i / 4));
      t.style.left = (i * 25) + "%";
      axis.appendChild(t);
    }
    var head = el("div", "wf-row wf-head");
    head.appendChild(el("div", "wf-label", ""));
    var track = el("div", "wf-track");
    track.appendChild(axis);
    head.appendChild(track);
    box.appendChild(head);
    function add(bar, depth, parentRow) {
      var row = el("div", "wf-row depth-" + Math.min(depth, 4));
      row.dataset.id = bar.id;
      if (parentRow) row.dataset.parent = parentRow.dataset.id;
      var label = el("div", "wf-label");
      if (bar.children.length) {
        var tog = el("button", "wf-toggle", "▾");
        tog.type = "button";
        tog.setAttribute("aria-expanded", "true");
        tog.title = "collapse the subagent work this call started";
        tog.addEventListener("click", function (ev) {
          ev.stopPropagation();
          var open = tog.getAttribute("aria-expanded") !== "true";
          tog.setAttribute("aria-expanded", open ? "true" : "false");
          tog.textContent = open ? "▾" : "▸";
          setHidden(bar.id, !open);
        });
        label.appendChild(tog);
      }
      label.appendChild(el("span", "wf-name " + bar.kind, bar.label));
      row.appendChild(label);
      var tr = el("div", "wf-track");
      var b = el("a", "wf-bar " + bar.kind + " " + bar.status);
      b.href = "#" + bar.anchor;
      b.dataset.anchor = bar.anchor;
      b.dataset.duration = String(bar.duration);
      b.style.left = (100 * bar.start / span) + "%";
      b.style.width = Math.max(0.2, 100 * bar.duration / span) + "%";
      b.title = bar.label + " · " + bar.status + " · " + fmtMs(bar.duration) +
        (bar.tokens ? " · " + bar.tokens : "") + (bar.detail ? "\n" + bar.detail : "");
      b.appendChild(el("span", "wf-dur", fmtMs(bar.duration)));
      b.addEventListener("click", function (ev) {
        ev.preventDefault();
        jumpTo(bar.anchor, null);
      });
      tr.appendChild(b);
      row.appendChild(tr);
      box.appendChild(row);
      bar.children.forEach(function (c) { add(c, depth + 1, row); });
    }
    function setHidden(id, hidden) {
      box.querySelectorAll('.wf-row[data-parent="' + CSS.escape(id) + '"]').forEach(function (r) {
        r.hidden = hidden;
        setHidden(r.dataset.id, hidden || r.querySelector(".wf-toggle[aria-expanded=false]") !== null);
      });
    }
    data.bars.forEach(function (b) { add(b, 0, null); });
  }

  // ---- transcript: find an entry, loading more pages when needed --------------------------
  function sessionId() { return document.body.dataset.session; }

  function loadMore(button) {
    var next = button.dataset.next;
    button.disabled = true;
    return fetch("/sessions/" + encodeURIComponent(sessionId()) + "/entries?offset=" + encodeURIComponent(next))
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (html) {
        var tpl = document.createElement("template");
        tpl.innerHTML = html;  // this server's fragment: stored text in it is escaped
        button.replaceWith(tpl.content);
      })
      .catch(function () { button.disabled = false; });
  }

  function findTarget(anchor, text) {
    if (anchor) {
      var byId = document.getElementById(anchor);
      if (byId) return byId;
      var m = /^m-(\d+)$/.exec(anchor);
      if (m) {
        var bySeq = document.querySelector('[data-seq="' + m[1] + '"]');
        if (bySeq) return bySeq;
      }
    }
    if (text) {
      var needle = text.toLowerCase();
      var all = document.querySelectorAll("#transcript .entry");
      for (var i = 0; i < all.length; i++) {
        if ((all[i].textContent || "").toLowerCase().indexOf(needle) >= 0) return all[i];
      }
    }
    return null;
  }

  function reveal(target) {
    for (var p = target; p; p = p.parentElement) {
      if (p.tagName === "DETAILS") p.open = true;
    }
    var inner = target.querySelectorAll("details.more");
    inner.forEach(function (d) { d.open = true; });
    document.querySelectorAll(".entry.target").forEach(function (e) { e.classList.remove("target"); });
    target.classList.add("target");
    target.scrollIntoView({ block: "center" });
  }

  function jumpTo(anchor, text, loads) {
    loads = loads || 0;
    var target = findTarget(anchor, text);
    if (target) { reveal(target); return; }
    var more = document.querySelector("#transcript .load-more");
    if (more && loads < MAX_LOADS) {
      loadMore(more).then(function () { jumpTo(anchor, text, loads + 1); });
    }
  }

  // ---- live updates of a running session -----------------------------------------------
  function live() {
    var body = document.body;
    if (!body.dataset.live) return;
    var timer = null;
    function tick() {
      var shown = document.querySelectorAll("#transcript .entry").length;
      var url = "/sessions/" + encodeURIComponent(sessionId()) + "/live?fp=" +
        encodeURIComponent(body.dataset.fp || "") + "&shown=" + Math.max(shown, 1);
      fetch(url, { cache: "no-store" }).then(function (r) {
        if (r.status === 204) return null;
        if (!r.ok) throw new Error("HTTP " + r.status);
        body.dataset.fp = r.headers.get("x-fingerprint") || "";
        var status = r.headers.get("x-status");
        return r.text().then(function (html) { return [html, status]; });
      }).then(function (res) {
        if (res) {
          var open = {};
          document.querySelectorAll("#session-main details[open][id]").forEach(function (d) { open[d.id] = true; });
          var main = document.getElementById("session-main");
          var tpl = document.createElement("template");
          tpl.innerHTML = res[0];  // this server's fragment: stored text in it is escaped
          main.replaceChildren(tpl.content);
          Object.keys(open).forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
          renderWaterfall();
          if (res[1] && res[1] !== "running") { delete body.dataset.live; return; }
        }
        timer = setTimeout(tick, POLL_MS);
      }).catch(function () { timer = setTimeout(tick, POLL_MS * 2); });
    }
    timer = setTimeout(tick, POLL_MS);
    window.addEventListener("pagehide", function () { if (timer) clearTimeout(timer); });
  }

  function init() {
    renderWaterfall();
    document.addEventListener("click", function (ev) {
      var t = ev.target;
      if (t instanceof Element && t.classList.contains("load-more")) loadMore(t);
    });
    if (document.body.classList.contains("session-page")) {
      var params = new URLSearchParams(location.search);
      var find = params.get("find");
      var anchor = location.hash ? decodeURIComponent(location.hash.slice(1)) : null;
      if (anchor || find) jumpTo(anchor, find);
      live();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
