// The dashboard's plain JavaScript: decisions and node start/stop go through /syft/api/ with
// Jupyter's XSRF token; each running node's section is re-fetched (server-rendered) every 2 s.
(function () {
  "use strict";
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const base = meta("syft-base");
  const xsrf = meta("syft-xsrf");

  function flash(text, kind) {
    const box = document.getElementById("flash");
    box.textContent = text;
    box.className = kind || "info";
  }

  async function api(method, path, body) {
    const response = await fetch(`${base}/syft/api${path}`, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-XSRFToken": xsrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(data.message || `${response.status} ${response.statusText}`);
    }
    return data;
  }

  async function refreshSection(section) {
    const node = section.dataset.node;
    const comments = {};
    section.querySelectorAll(".request").forEach((row) => {
      const box = row.querySelector("textarea.comment");
      if (box && box.value) comments[row.dataset.request] = box.value;
    });
    if (section.contains(document.activeElement) && document.activeElement.tagName === "TEXTAREA") {
      return; // the owner is typing a comment: refresh later
    }
    try {
      const response = await fetch(`${base}/syft/dashboard/nodes/${encodeURIComponent(node)}`,
        { credentials: "same-origin" });
      if (!response.ok) return;
      const holder = document.createElement("div");
      holder.innerHTML = await response.text();
      const fresh = holder.firstElementChild;
      fresh.querySelectorAll(".request").forEach((row) => {
        const box = row.querySelector("textarea.comment");
        if (box && comments[row.dataset.request]) box.value = comments[row.dataset.request];
      });
      section.replaceWith(fresh);
    } catch (e) {
      /* the server is restarting: try again next time */
    }
  }

  async function decide(button, decision) {
    const row = button.closest(".request");
    const section = button.closest("section.node");
    const comment = row.querySelector("textarea.comment").value;
    row.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try {
      const info = await api("POST",
        `/nodes/${encodeURIComponent(section.dataset.node)}/requests/${row.dataset.request}/${decision}`,
        { comment });
      flash(`${decision === "approve" ? "approved" : "denied"} ${info.id}: now ${info.status}`, "info");
    } catch (e) {
      flash(`${row.dataset.request}: ${e.message}`, "error");
    }
    await refreshSection(section);
  }

  async function nodeAction(name, action) {
    flash(`${action === "start" ? "starting" : "stopping"} ${name}…`, "info");
    try {
      await api("POST", `/nodes/${encodeURIComponent(name)}/${action}`);
      window.location.reload();
    } catch (e) {
      flash(`${name}: ${e.message}`, "error");
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.classList.contains("approve")) decide(button, "approve");
    else if (button.classList.contains("deny")) decide(button, "deny");
    else if (button.classList.contains("node-start")) nodeAction(button.dataset.node, "start");
    else if (button.classList.contains("node-stop")) nodeAction(button.dataset.node, "stop");
  });

  document.getElementById("new-node").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = new FormData(event.target).get("name");
    flash(`creating ${name}…`, "info");
    try {
      await api("POST", "/nodes", { name });
      window.location.reload();
    } catch (e) {
      flash(`${name}: ${e.message}`, "error");
    }
  });

  // The nodes table: if a node was started or stopped elsewhere, reload to get its section.
  async function refreshNodes() {
    const response = await fetch(`${base}/syft/dashboard/fragments/nodes`, { credentials: "same-origin" });
    if (!response.ok) return;
    const holder = document.getElementById("nodes-holder");
    holder.innerHTML = await response.text();
    const running = [...holder.querySelectorAll("button.node-stop")].map((b) => b.dataset.node).sort();
    const shown = [...document.querySelectorAll("section.node")]
      .filter((s) => !s.querySelector("p.muted.stopped"))
      .map((s) => s.dataset.node).sort();
    const typing = document.activeElement && document.activeElement.tagName === "TEXTAREA";
    if (!typing && running.join() !== shown.join()) window.location.reload();
  }

  // One refresh at a time, every 2 s after the last one ended: a slow node never piles up requests.
  async function refreshAll() {
    try {
      await refreshNodes();
      for (const section of document.querySelectorAll("section.node")) await refreshSection(section);
    } catch (e) {
      /* the server is restarting: try again next time */
    }
    setTimeout(refreshAll, 2000);
  }
  setTimeout(refreshAll, 2000);
})();
