// stagewatch's live preview: injected into HTML responses as they are served, never written to disk.
// One WebSocket per tab, to the page's own origin. The server says when to reload, which
// stylesheets to swap in place, and which stages fail (shown in an overlay until they succeed).
(() => {
  "use strict";
  if (window.__stagewatch) return;
  const script = document.currentScript;
  const identity = script ? script.dataset.identity || "" : "";
  // The stages still writing this page when it was served: it is their last good version.
  const stale = script && script.dataset.stale ? script.dataset.stale.split(" ") : [];
  const scrollKey = "stagewatch:scroll:" + location.pathname + location.search;
  // followed: the server has the tab's hello, and tells it of every round from here on.
  const state = { ws: null, delay: 200, sent: new Set(), failures: [], followed: false };
  window.__stagewatch = state;

  // A reload keeps the reader where they were.
  const saved = sessionStorage.getItem(scrollKey);
  if (saved !== null) {
    sessionStorage.removeItem(scrollKey);
    const [x, y] = JSON.parse(saved);
    const restore = () => window.scrollTo(x, y);
    restore();
    document.addEventListener("DOMContentLoaded", restore, { once: true });
    window.addEventListener("load", restore, { once: true });
  }

  function ownPath(url) {
    try {
      const parsed = new URL(url, location.href);
      if (parsed.origin !== location.origin || parsed.pathname.startsWith("/_stagewatch/")) return null;
      return parsed.pathname;
    } catch (_) {
      return null;
    }
  }

  function loaded() {
    const paths = new Set();
    for (const entry of performance.getEntriesByType("resource")) {
      const path = ownPath(entry.name);
      if (path) paths.add(path);
    }
    for (const link of document.querySelectorAll('link[rel~="stylesheet"][href]')) {
      const path = ownPath(link.href);
      if (path) paths.add(path);
    }
    return [...paths];
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/_stagewatch/ws");
    state.ws = ws;
    ws.onopen = () => {
      state.delay = 200;
      const urls = loaded();
      urls.forEach((url) => state.sent.add(url));
      ws.send(JSON.stringify({ type: "hello", page: location.pathname, identity, loaded: urls }));
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (message.type === "welcome") state.followed = true;
      else if (message.type === "reload") reload();
      else if (message.type === "css") swap(message.paths);
      else if (message.type === "failures") showFailures(message.failures);
    };
    ws.onclose = () => {
      state.followed = false;
      // The server restarted, or went away: try again, less and less often.
      if (state.ws === ws) state.ws = null;
      setTimeout(connect, state.delay);
      state.delay = Math.min(state.delay * 2, 3000);
    };
  }

  // Resources fetched after the hello (lazy images, scripts' fetches) count too.
  try {
    new PerformanceObserver((list) => {
      const fresh = [];
      for (const entry of list.getEntries()) {
        const path = ownPath(entry.name);
        if (path && !state.sent.has(path)) {
          state.sent.add(path);
          fresh.push(path);
        }
      }
      if (fresh.length) send({ type: "loaded", loaded: fresh });
    }).observe({ type: "resource" });
  } catch (_) {
    // An old browser: what the hello said is all it tracks.
  }

  function reload() {
    sessionStorage.setItem(scrollKey, JSON.stringify([window.scrollX, window.scrollY]));
    location.reload();
  }

  function swap(paths) {
    const links = [...document.querySelectorAll('link[rel~="stylesheet"][href]')];
    for (const path of paths) {
      const matching = links.filter((link) => ownPath(link.href) === path);
      if (!matching.length) {
        reload(); // an @import, or a sheet a script loaded: only a reload brings it
        return;
      }
      for (const old of matching) {
        // The new sheet loads beside the old one, which goes once it is in: no flash.
        const fresh = old.cloneNode();
        const url = new URL(old.href);
        url.searchParams.set("stagewatch", Date.now().toString(36));
        fresh.href = url.href;
        fresh.addEventListener("load", () => old.remove(), { once: true });
        fresh.addEventListener("error", () => fresh.remove(), { once: true });
        old.after(fresh);
      }
    }
  }

  const overlayStyle = `
    :host { all: initial; }
    .box { position: fixed; inset: auto 0 0 0; max-height: 60vh; display: flex; flex-direction: column;
      z-index: 2147483647; background: #1e1e1e; color: #eee;
      font: 13px/1.45 ui-monospace, Menlo, Consolas, monospace; border-top: 4px solid #e5484d;
      box-shadow: 0 -4px 24px rgba(0,0,0,.4); }
    .output { overflow: auto; min-height: 0; padding: 0 44px 0 16px; }
    /* Each failure's headline stays in view while its output scrolls under it. */
    h2 { font: bold 15px system-ui, sans-serif; color: #ff8080; margin: 0; padding: 10px 0 4px;
      position: sticky; top: 0; background: #1e1e1e; }
    h2 .exception { display: block; font: bold 14px/1.45 ui-monospace, Menlo, Consolas, monospace;
      color: #ff8080; white-space: pre-wrap; overflow-wrap: anywhere; }
    h2 .exception + .where { display: block; font-size: 13px; color: #ccc; margin-top: 2px; }
    p { margin: 2px 0; color: #bbb; }
    pre { background: #111; padding: 8px; margin: 6px 0 12px; white-space: pre-wrap; }
    button { position: absolute; top: 6px; right: 10px; background: none; border: 0; color: #eee;
      font-size: 20px; cursor: pointer; z-index: 1; }`;

  function showFailures(failures) {
    state.failures = failures;
    // A stage that was still writing this page has ended, failing: the overlay says why.
    const banner = document.getElementById("stagewatch-stale");
    if (banner && failures.some((failure) => stale.includes(failure.stage))) banner.remove();
    let host = document.getElementById("stagewatch-overlay");
    if (!failures.length) {
      if (host) host.remove();
      return;
    }
    if (!host) {
      host = document.createElement("div");
      host.id = "stagewatch-overlay";
      host.attachShadow({ mode: "open" });
      document.documentElement.appendChild(host);
    }
    const root = host.shadowRoot;
    root.innerHTML = "";
    const style = document.createElement("style");
    style.textContent = overlayStyle;
    const box = document.createElement("div");
    box.className = "box";
    box.setAttribute("role", "alert");
    const close = document.createElement("button");
    close.textContent = "\u00d7";
    close.title = "hide until the next failure";
    close.onclick = () => host.remove();
    const output = document.createElement("div");
    output.className = "output";
    box.append(close, output);
    for (const failure of failures) {
      const section = document.createElement("section");
      section.className = "failure";
      section.dataset.stage = failure.stage;
      // Led by its exception line (what a person reads first), then whose failure it is.
      const title = document.createElement("h2");
      if (failure.exception) {
        const exception = document.createElement("span");
        exception.className = "exception";
        exception.textContent = failure.exception;
        title.appendChild(exception);
      }
      // A run can fail with exit 0 (an output it did not write): then the error says why.
      const status = failure.exit_code ? ` (exit ${failure.exit_code})` : "";
      const where = document.createElement("span");
      where.className = "where";
      const code = document.createElement("p");
      if (failure.pipeline) {
        where.textContent = `${failure.pipeline} is invalid: the pipeline running is the one before`;
        code.textContent = "fix it and save it: it is read again, and this goes away";
      } else {
        where.textContent = `stage "${failure.stage}" failed${status}`;
        code.textContent = `runs ${failure.code}` + (failure.error ? `: ${failure.error}` : "");
      }
      title.appendChild(where);
      const tail = document.createElement("pre");
      tail.textContent = failure.tail.join("\n");
      section.append(title, code, tail);
      output.appendChild(section);
    }
    root.append(style, box);
    // Opened at its end: the output's last lines, where the error is, are in view.
    output.scrollTop = output.scrollHeight;
  }

  const staleStyle = `
    :host { all: initial; }
    .bar { position: fixed; inset: 0 0 auto 0; z-index: 2147483647; padding: 6px 16px;
      background: #fff4c2; color: #3d3000; border-bottom: 2px solid #e0b400;
      font: 13px/1.45 system-ui, sans-serif; box-shadow: 0 2px 8px rgba(0,0,0,.15); }
    button { float: right; background: none; border: 0; color: inherit; font-size: 18px;
      line-height: 1; cursor: pointer; }`;

  // Said until the page reloads, which it does by itself once the stages are done.
  function showStale() {
    const host = document.createElement("div");
    host.id = "stagewatch-stale";
    host.attachShadow({ mode: "open" });
    const style = document.createElement("style");
    style.textContent = staleStyle;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "status");
    const names = stale.map((name) => `"${name}"`).join(", ");
    const [who, is, them] = stale.length > 1 ? ["stages", "are", "they are"] : ["stage", "is", "it is"];
    const text = document.createElement("span");
    text.textContent =
      `stagewatch: ${who} ${names} ${is} still writing this page: you see its last good version.` +
      ` It reloads by itself when ${them} done.`;
    const close = document.createElement("button");
    close.textContent = "\u00d7";
    close.title = "hide";
    close.onclick = () => host.remove();
    bar.append(text, close);
    host.shadowRoot.append(style, bar);
    document.documentElement.appendChild(host);
  }

  if (stale.length) showStale();
  connect();
})();
