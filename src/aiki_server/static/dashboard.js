// Aiki dashboard: local times, run actions through the JSON API, live refresh.
// No dependencies, no build step. Every value from the page is read as text.
"use strict";

(function () {
  const body = document.body;
  const api = body.dataset.api || "/api/v1";
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);

  function localTimes() {
    for (const el of document.querySelectorAll("time[data-ms]")) {
      const ms = Number(el.dataset.ms);
      if (!ms) continue;
      const d = new Date(ms);
      el.title = d.toISOString();
      el.textContent = d.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
      });
    }
  }

  function toast(message, bad) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = message;
    el.className = "toast" + (bad ? " bad" : "");
    el.hidden = false;
    clearTimeout(el._timer);
    el._timer = setTimeout(() => { el.hidden = true; }, bad ? 8000 : 3000);
  }

  async function control(runId, action, button) {
    let payload = {};
    if (action === "cancel") {
      if (!window.confirm("Cancel run " + runId + "? This cannot be undone.")) return;
      payload = { reason: "cancelled from the dashboard" };
    }
    button.disabled = true;
    try {
      const response = await fetch(api + "/runs/" + encodeURIComponent(runId) + "/" + action, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(payload),
      });
      let data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (!response.ok) {
        const error = data && data.error ? data.error.message : response.statusText;
        toast(action + " failed: " + error, true);
        button.disabled = false;
        return;
      }
      toast("run " + (data && data.result ? data.result : action));
      setTimeout(() => window.location.reload(), 300);
    } catch (e) {
      toast(action + " failed: " + e, true);
      button.disabled = false;
    }
  }

  function wireActions() {
    for (const button of document.querySelectorAll("[data-action]")) {
      const holder = button.closest("[data-run-id]");
      if (!holder) continue;
      button.addEventListener("click", (event) => {
        event.preventDefault();
        control(holder.dataset.runId, button.dataset.action, button);
      });
    }
  }

  // A run that has not ended: poll the API every second; reload when it changed.
  function liveRun() {
    if (!body.dataset.liveRun) return;
    const runId = body.dataset.runId;
    let signature = null;
    let failures = 0;
    async function poll() {
      try {
        const response = await fetch(api + "/runs/" + encodeURIComponent(runId), {
          headers: { "Accept": "application/json" },
        });
        if (response.ok) {
          failures = 0;
          const run = await response.json();
          const now = [run.status, run.revision, run.updated_at, (run.tasks || []).length,
            (run.tasks || []).map((t) => t.status).join(",")].join("|");
          const changed = signature === null
            ? run.status !== body.dataset.runStatus
            : now !== signature;
          if (changed) {
            window.location.reload();
            return;
          }
          signature = now;
          if (TERMINAL.has(run.status)) { window.location.reload(); return; }
        } else {
          failures += 1;
        }
      } catch (e) {
        failures += 1;
      }
      setTimeout(poll, failures ? Math.min(10000, 1000 * 2 ** failures) : 1000);
    }
    setTimeout(poll, 1000);
  }

  // The runs list with "Live" on: reload every few seconds unless the user is typing.
  function autoRefresh() {
    const seconds = Number(body.dataset.autoRefresh || 0);
    if (!seconds) return;
    setInterval(() => {
      const active = document.activeElement;
      if (active && ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName)) return;
      window.location.reload();
    }, seconds * 1000);
  }

  localTimes();
  wireActions();
  liveRun();
  autoRefresh();
})();
