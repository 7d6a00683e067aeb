// The status page's refresh: polls GET /v1/status and renders the same
// markup page.rs renders on the server (same ids, classes and data-*
// attributes). Every value goes in through textContent or setAttribute, never
// as HTML. When the endpoint answers 401 (admin auth on), the token is asked
// for once, kept in sessionStorage (this tab only) and sent as
// `Authorization: Bearer`; it never goes into a URL.
(function () {
  "use strict";
  var KEY = "limitree-admin-token";
  var every = Number(document.body.getAttribute("data-refresh-ms")) || 5000;
  var asked = false;

  function el(tag, attrs) {
    var node = document.createElement(tag);
    var key;
    for (key in attrs || {}) {
      if (Object.prototype.hasOwnProperty.call(attrs, key)) {
        node.setAttribute(key, String(attrs[key]));
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function frag() {
    var f = document.createDocumentFragment();
    for (var i = 0; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      f.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
    }
    return f;
  }
  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (c) { tr.appendChild(el("th", {}, c)); });
    return tr;
  }
  function time(ms) { return new Date(ms).toUTCString(); }
  var UNITS = [["d", 86400000], ["h", 3600000], ["m", 60000], ["s", 1000], ["ms", 1]];
  // As the server writes it (status.rs `ago_text`): rounded down.
  function ago(ms) {
    if (ms === null || ms === undefined) return "\u2014";
    return duration(ms >= 1000 ? Math.floor(ms / 1000) * 1000 : ms) + " ago";
  }
  function duration(ms) {
    if (ms >= 1000) ms = Math.ceil(ms / 1000) * 1000;
    if (ms === 0) return "0s";
    var parts = [];
    UNITS.forEach(function (u) {
      if (ms >= u[1]) { parts.push(Math.floor(ms / u[1]) + u[0]); ms %= u[1]; }
    });
    return parts.join(" ");
  }

  function summary(s) {
    var store = el("td", { id: "store", "data-kind": s.store.kind, "data-ready": s.store.ready },
      s.store.kind + ": ",
      s.store.ready ? el("span", { "class": "ok" }, "ready") : el("span", { "class": "bad" }, "not ready"),
      s.store.detail ? " — " + s.store.detail : null);
    return el("section", { id: "summary" }, el("h2", {}, "Server"),
      el("table", {}, el("tbody", {},
        el("tr", {}, el("th", {}, "generated"),
          el("td", { id: "generated", "data-ms": s.generated_at_ms }, time(s.generated_at_ms))),
        el("tr", {}, el("th", {}, "store"), store),
        el("tr", {}, el("th", {}, "policy loaded"),
          el("td", { id: "loaded", "data-ms": s.policy.loaded_at_ms },
            time(s.policy.loaded_at_ms) + " (" + s.policy.note + ")")))));
  }

  function levelsTable(tree) {
    var body = el("tbody");
    tree.levels.forEach(function (l) {
      var limit = l.limit + " per " + l.window + (l.burst !== undefined ? " (burst " + l.burst + ")" : "");
      body.appendChild(el("tr", { "class": "level", "data-level": l.name, "data-denied": l.denied },
        el("td", {}, l.name + (l.shadow ? " (shadow)" : "")),
        el("td", {}, l.by.length ? l.by.join(", ") : "(global)"),
        el("td", {}, limit), el("td", {}, l.algorithm), el("td", {}, l.denied)));
    });
    return el("table", { "class": "levels" },
      el("thead", {}, row(["level", "by", "limit", "algorithm", "denied"])), body);
  }

  function bucketRow(b) {
    return el("tr", { "class": "bucket", "data-bucket": b.bucket, "data-used": b.used,
      "data-capacity": b.capacity, "data-remaining": b.remaining },
      el("td", {}, el("a", { href: b.path }, b.bucket)),
      el("td", {}, b.used), el("td", {}, b.capacity), el("td", {}, b.remaining),
      el("td", {}, duration(b.reset_after_ms)),
      el("td", {}, ago(b.last_admission_ms_ago)),
      el("td", {}, el("meter", { min: 0, max: b.capacity, value: b.used }, b.used + "/" + b.capacity)));
  }

  function levelBuckets(tree, l) {
    var f = frag(el("h3", {}, "Busiest buckets of " + l.name));
    if (l.error) {
      f.appendChild(el("p", { "class": "bad" }, l.error));
    } else if (!l.buckets.length) {
      f.appendChild(el("p", { "class": "empty" }, "nothing used"));
    } else {
      var body = el("tbody");
      l.buckets.forEach(function (b) { body.appendChild(bucketRow(b)); });
      f.appendChild(el("table", { "class": "buckets", "data-tree": tree, "data-level": l.name,
        "data-truncated": l.truncated, "data-scanned": l.scanned },
        el("thead", {}, row(["bucket", "used", "capacity", "remaining", "full again in", "last admitted", "usage"])), body));
      if (l.truncated) {
        f.appendChild(el("p", { "class": "note" }, "looked at " + l.scanned + " buckets, not all: busiest of those"));
      }
    }
    return f;
  }

  function treeSection(tree) {
    var section = el("section", { "class": "tree", "data-tree": tree.name },
      el("h2", {}, "Tree " + tree.name + (tree.kind === "envoy" ? " (envoyproxy/ratelimit domain)" : "")),
      levelsTable(tree));
    tree.levels.forEach(function (l) { section.appendChild(levelBuckets(tree.name, l)); });
    return section;
  }

  function denials(list) {
    var section = el("section", { id: "denials" }, el("h2", {}, "Recent denials"));
    if (!list.length) {
      section.appendChild(el("p", { "class": "empty" }, "none since start"));
      return section;
    }
    var body = el("tbody");
    list.forEach(function (d) {
      d.levels.forEach(function (l) {
        body.appendChild(el("tr", { "class": "denial", "data-tree": d.tree, "data-level": l.level, "data-bucket": l.bucket },
          el("td", {}, time(d.at_ms)), el("td", {}, d.source), el("td", {}, d.tree),
          el("td", {}, d.reason), el("td", {}, l.level), el("td", {}, l.bucket)));
      });
    });
    section.appendChild(el("table", {},
      el("thead", {}, row(["at", "source", "tree", "reason", "level", "bucket"])), body));
    return section;
  }

  function relay(r) {
    var section = el("section", { id: "relay" }, el("h2", {}, "Slack relay"),
      el("p", {}, "accepted ", el("span", { id: "relay-accepted" }, r.accepted),
        ", suppressed ", el("span", { id: "relay-limited" }, r.limited),
        ", refused (queue full) ", el("span", { id: "relay-queue-full" }, r.queue_full),
        ", refused (no route) ", el("span", { id: "relay-no-route" }, r.no_route),
        "; pending digests ", el("span", { id: "relay-digests" }, r.pending_digests)));
    if (!r.webhooks.length) {
      section.appendChild(el("p", { "class": "empty" }, "no webhook configured"));
      return section;
    }
    var body = el("tbody");
    r.webhooks.forEach(function (w) {
      body.appendChild(el("tr", { "class": "webhook", "data-webhook": w.webhook,
        "data-queue-depth": w.queue_depth, "data-dead-lettered": w.dead_lettered },
        el("td", {}, w.webhook),
        el("td", {}, w.queue_depth + " ", el("meter", { min: 0, max: w.queue_capacity, value: w.queue_depth })),
        el("td", {}, w.queue_capacity), el("td", {}, w.delivered), el("td", {}, w.rate_limited),
        el("td", {}, w.failed), el("td", {}, w.dead_lettered)));
    });
    section.appendChild(el("table", {},
      el("thead", {}, row(["webhook", "queued", "capacity", "delivered", "429s", "failed", "dead letters"])), body));
    return section;
  }

  function render(s) {
    var main = document.getElementById("status");
    var f = frag(summary(s));
    s.trees.forEach(function (t) { f.appendChild(treeSection(t)); });
    f.appendChild(denials(s.denials));
    f.appendChild(relay(s.relay));
    main.replaceChildren(f);
    var body = document.body;
    body.setAttribute("data-refreshes", String(Number(body.getAttribute("data-refreshes")) + 1));
  }

  function note(text) {
    var p = document.getElementById("refresh");
    if (p) p.textContent = text;
  }

  function refresh() {
    var headers = { Accept: "application/json" };
    var token = window.sessionStorage.getItem(KEY);
    if (token) headers.Authorization = "Bearer " + token;
    return window.fetch("/v1/status", { headers: headers, cache: "no-store" }).then(function (r) {
      if (r.status === 401) {
        if (asked) { note("GET /v1/status answered 401: the token was refused; reload the page to enter another"); return; }
        asked = true;
        window.sessionStorage.removeItem(KEY);
        var entered = window.prompt("limitree admin token (kept in this tab only)");
        if (entered) { window.sessionStorage.setItem(KEY, entered); return refresh(); }
        note("GET /v1/status needs an admin token; reload the page to enter one");
        return;
      }
      if (!r.ok) { note("refresh failed: GET /v1/status answered " + r.status); return; }
      return r.json().then(function (s) {
        render(s);
        note("Refreshed " + time(s.generated_at_ms) + "; refreshes every " + every / 1000 + " s.");
      });
    }).catch(function (e) { note("refresh failed: " + e); });
  }

  function loop() {
    refresh().then(function () { window.setTimeout(loop, every); });
  }
  loop();
})();
