"use strict";
// The review page's only script, plain and unbuilt: the token kept for this tab (the server records the reviewer it is
// bound to), and labelling a defect from the keyboard. Everything it shows goes through textContent, never innerHTML.
(() => {
  const root = document.body.dataset.root || "";
  const stored = { token: "lineguard.review.token" };
  for (const [id, key] of Object.entries(stored)) {
    const input = document.getElementById(id);
    if (!input) continue;
    input.value = sessionStorage.getItem(key) || "";
    input.addEventListener("input", () => sessionStorage.setItem(key, input.value.trim()));
  }

  const panel = document.getElementById("review");
  if (!panel) return;
  const message = document.getElementById("message");
  const note = document.getElementById("note");
  const labels = [...panel.querySelectorAll("button[data-label]")].map((button) => button.dataset.label);
  const state = { status: panel.dataset.status, label: panel.dataset.label || null };

  function say(text, kind) {
    message.textContent = text;
    message.className = kind;
  }

  async function save(status, label) {
    const token = (document.getElementById("token")?.value || "").trim();
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const body = { status, label, note: note ? note.value : null };
    say("saving…", "busy");
    let response;
    try {
      response = await fetch(`${root}/api/defects/${encodeURIComponent(panel.dataset.id)}/review`, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
      });
    } catch (error) {
      say(`not saved: ${error}`, "error");
      return;
    }
    if (!response.ok) {
      const detail = await response.json().then((answer) => answer.detail, () => response.statusText);
      const text = typeof detail === "string" ? detail : JSON.stringify(detail);
      say(`refused (${response.status}): ${text}${response.status === 401 ? " — enter the token above" : ""}`, "error");
      return;
    }
    const saved = await response.json();
    state.status = saved.status;
    state.label = saved.label;
    const shown = document.getElementById("status");
    shown.textContent = saved.status;
    shown.className = `status status-${saved.status}`;
    document.getElementById("label").textContent = saved.label || "—";
    document.getElementById("reviewed").textContent = `by ${saved.reviewed_by} at ${saved.reviewed_at}`;
    say(`saved: ${saved.status}${saved.label ? ` (${saved.label})` : ""}`, "ok");
  }

  function go(id) {
    const link = document.getElementById(id);
    if (link) window.location.href = link.href;
    return Boolean(link);
  }

  // One table from key to action; the buttons carry the same keys, so mouse and keyboard do the same thing.
  function act(key) {
    const index = Number.parseInt(key, 10);
    if (index >= 1 && index <= labels.length) return save("confirmed", labels[index - 1]);
    switch (key) {
      case "c": return save("confirmed", state.label);
      case "f": return save("rejected", null);
      case "u": return save("new", null);
      case "s": return save(state.status, state.label);
      case "n": note?.focus(); return true;
      case "j": return go("older");
      case "k": return go("newer");
      default: return false;
    }
  }

  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input, textarea, select");
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      if (event.target === note && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        act("s");
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (act(event.key) !== false) event.preventDefault();
  });
  panel.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-key]");
    if (button) act(button.dataset.key);
  });
})();
