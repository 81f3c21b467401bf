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

  // One button press: send the request, say what happened, reload on success.
  async function act(action, button, url, method, body, done) {
    button.disabled = true;
    try {
      const response = await fetch(url, {
        method: method,
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: body,
      });
      let data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (!response.ok) {
        const error = data && data.error ? data.error.message : response.statusText;
        toast(action + " failed: " + error, true);
        button.disabled = false;
        return;
      }
      toast(done(data));
      setTimeout(() => window.location.reload(), 300);
    } catch (e) {
      toast(action + " failed: " + e, true);
      button.disabled = false;
    }
  }

  // Buttons with `data-<kind>` inside an element with `data-<holder>` (the id).
  function wire(buttonAttr, holderAttr, handler) {
    for (const button of document.querySelectorAll("[" + buttonAttr + "]")) {
      const holder = button.closest("[" + holderAttr + "]");
      if (!holder) continue;
      button.addEventListener("click", (event) => {
        event.preventDefault();
        handler(holder.getAttribute(holderAttr), button.getAttribute(buttonAttr), button);
      });
    }
  }

  function control(runId, action, button) {
    let payload = {};
    if (action === "cancel") {
      if (!window.confirm("Cancel run " + runId + "? This cannot be undone.")) return;
      payload = { reason: "cancelled from the dashboard" };
    }
    const url = api + "/runs/" + encodeURIComponent(runId) + "/" + action;
    act(action, button, url, "POST", JSON.stringify(payload),
      (data) => "run " + (data && data.result ? data.result : action));
  }

  function wireActions() {
    wire("data-action", "data-run-id", control);
  }

  // Dead letters: requeue (the run gets its message back) or discard, then reload.
  function letterAction(letterId, action, button) {
    if (action === "discard" && !window.confirm("Discard dead letter " + letterId + "?")) return;
    const requeue = action === "requeue";
    const url = api + "/dead-letters/" + encodeURIComponent(letterId) + (requeue ? "/requeue" : "");
    act(action, button, url, requeue ? "POST" : "DELETE", requeue ? "{}" : undefined,
      (data) => (requeue ? "run " + (data && data.result) : "discarded"));
  }

  function wireLetters() {
    wire("data-letter-action", "data-letter-id", letterAction);
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

  // Starting a run (/workflows/<name>/<version>): a field per top-level scalar property
  // of the input schema, a JSON editor for the whole payload, and a check of the payload
  // against the schema before POST /runs (which checks it again: 422 names the field).
  function joinPath(path, key) {
    return typeof key === "number" ? path + "[" + key + "]" : (path ? path + "." + key : key);
  }

  function resolve(root, schema) {
    let s = schema || {};
    while (s && typeof s.$ref === "string" && s.$ref.startsWith("#/$defs/")) {
      s = ((root.$defs || {})[s.$ref.slice(8)]) || {};
    }
    return s;
  }

  function typeOf(value) {
    if (value === null) return "null";
    if (Array.isArray(value)) return "array";
    if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
    return typeof value;
  }

  // The first error as [path, message], or null when the value fits.
  function check(root, schema, value, path) {
    const s = resolve(root, schema);
    for (const key of ["anyOf", "oneOf"]) {
      if (s[key]) {
        const errors = s[key].map((option) => check(root, option, value, path));
        if (errors.some((e) => e === null)) break;
        return errors.reduce((a, b) => (b[0].length > a[0].length ? b : a));
      }
    }
    for (const part of s.allOf || []) {
      const error = check(root, part, value, path);
      if (error) return error;
    }
    const actual = typeOf(value);
    if (s.type) {
      const types = Array.isArray(s.type) ? s.type : [s.type];
      const fits = types.includes(actual) || (actual === "integer" && types.includes("number"));
      if (!fits) return [path, "expected " + types.join(" or ") + ", got " + actual];
    }
    if (s.enum && !s.enum.some((v) => JSON.stringify(v) === JSON.stringify(value))) {
      return [path, "must be one of " + JSON.stringify(s.enum)];
    }
    if (s.const !== undefined && JSON.stringify(s.const) !== JSON.stringify(value)) {
      return [path, "must be " + JSON.stringify(s.const)];
    }
    if (actual === "integer" || actual === "number") {
      if (s.minimum !== undefined && value < s.minimum) return [path, "must be >= " + s.minimum];
      if (s.maximum !== undefined && value > s.maximum) return [path, "must be <= " + s.maximum];
      if (s.exclusiveMinimum !== undefined && value <= s.exclusiveMinimum) {
        return [path, "must be greater than " + s.exclusiveMinimum];
      }
      if (s.exclusiveMaximum !== undefined && value >= s.exclusiveMaximum) {
        return [path, "must be less than " + s.exclusiveMaximum];
      }
    }
    if (actual === "string") {
      if (s.minLength !== undefined && value.length < s.minLength) return [path, "is too short"];
      if (s.format === "date-time" && Number.isNaN(Date.parse(value))) {
        return [path, "expected a date-time, got " + JSON.stringify(value)];
      }
    }
    if (actual === "array" && s.items) {
      for (let i = 0; i < value.length; i++) {
        const error = check(root, s.items, value[i], joinPath(path, i));
        if (error) return error;
      }
    }
    if (actual === "object") {
      for (const name of s.required || []) {
        if (!(name in value)) return [joinPath(path, name), "field required"];
      }
      const props = s.properties || {};
      for (const [name, item] of Object.entries(value)) {
        if (name in props) {
          const error = check(root, props[name], item, joinPath(path, name));
          if (error) return error;
        } else if (s.additionalProperties === false) {
          return [joinPath(path, name), "extra field not permitted"];
        } else if (typeof s.additionalProperties === "object") {
          const error = check(root, s.additionalProperties, item, joinPath(path, name));
          if (error) return error;
        }
      }
    }
    return null;
  }

  function skeleton(root, schema) {
    const s = resolve(root, schema);
    if (s.default !== undefined) return s.default;
    const type = Array.isArray(s.type) ? s.type[0] : s.type;
    if (s.anyOf || s.oneOf) return skeleton(root, (s.anyOf || s.oneOf)[0]);
    if (s.enum) return s.enum[0];
    if (type === "object") {
      const out = {};
      for (const name of s.required || []) out[name] = skeleton(root, (s.properties || {})[name]);
      return out;
    }
    if (type === "array") return [];
    if (type === "string") return s.format === "date-time" ? new Date().toISOString() : "";
    if (type === "integer" || type === "number") return 0;
    if (type === "boolean") return false;
    return null;
  }

  function startForm() {
    const form = document.getElementById("start-form");
    if (!form) return;
    const schema = JSON.parse(document.getElementById("input-schema").textContent || "{}");
    const editor = document.getElementById("payload-editor");
    const errorBox = document.getElementById("start-error");
    const fields = document.getElementById("start-fields");
    const top = resolve(schema, schema);
    editor.value = JSON.stringify(Object.keys(schema).length ? skeleton(schema, schema) : {}, null, 2);
    function showError(message) {
      errorBox.textContent = message;
      errorBox.hidden = !message;
    }
    for (const [name, prop] of Object.entries(top.properties || {})) {
      const p = resolve(schema, prop);
      const type = Array.isArray(p.type) ? p.type[0] : p.type;
      if (!["string", "integer", "number", "boolean"].includes(type) || p.enum) continue;
      const label = document.createElement("label");
      label.textContent = name + ((top.required || []).includes(name) ? " *" : "");
      label.htmlFor = "field-" + name;
      const input = document.createElement("input");
      input.id = "field-" + name;
      input.name = name;
      input.type = type === "boolean" ? "checkbox" : (type === "string" ? "text" : "number");
      input.addEventListener("input", () => {
        let payload;
        try { payload = JSON.parse(editor.value || "{}"); } catch (e) { payload = {}; }
        if (typeOf(payload) !== "object") payload = {};
        if (type === "boolean") payload[name] = input.checked;
        else if (type === "string") payload[name] = input.value;
        else payload[name] = input.value === "" ? null : Number(input.value);
        editor.value = JSON.stringify(payload, null, 2);
      });
      fields.append(label, input);
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let payload;
      try {
        payload = JSON.parse(editor.value);
      } catch (e) {
        showError("payload: not valid JSON (" + e.message + ")");
        return;
      }
      const error = Object.keys(schema).length ? check(schema, schema, payload, "") : null;
      if (error) {
        showError("payload" + (error[0] ? "." + error[0] : "") + ": " + error[1]);
        return;
      }
      const request = { workflow: form.dataset.workflow, version: form.dataset.version, payload: payload };
      const priorityText = document.getElementById("priority-input").value.trim();
      if (priorityText !== "") {
        const priority = Number(priorityText);
        if (!Number.isInteger(priority) || priority < 0 || priority > 100) {
          showError("priority: must be a whole number from 0 to 100, got " + priorityText);
          return;
        }
        request.priority = priority;
      }
      showError("");
      const response = await fetch(api + "/runs", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(request),
      });
      let data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (!response.ok) {
        showError(data && data.error ? data.error.message : response.statusText);
        return;
      }
      window.location.href = (body.dataset.root || "") + "/runs/" + encodeURIComponent(data.id);
    });
  }

  localTimes();
  wireActions();
  wireLetters();
  liveRun();
  autoRefresh();
  startForm();
})();
