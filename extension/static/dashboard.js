// The dashboard's plain JavaScript: decisions and node start/stop go through /syft/api/ with
// Jupyter's XSRF token; each running node's section is re-fetched (server-rendered) every 2 s.
(function () {
  "use strict";
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const base = meta("syft-base");
  const xsrf = meta("syft-xsrf");

  // The notices' sentences come from the server (dashboard.NOTICES), with {names} to fill in.
  const notices = JSON.parse(document.getElementById("syft-notices").textContent);
  function sentence(text) {
    text = String(text).trim();
    return !text || ".!?…)".includes(text[text.length - 1]) ? text : `${text}.`;
  }
  function say(key, values) {
    const filled = { ...values };
    if ("error" in filled) filled.error = sentence(filled.error);
    return notices[key].replace(/\{(\w+)\}/g, (_, name) => (name in filled ? filled[name] : ""));
  }

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
    const opened = new Set(); // requests whose plan the owner has open: they stay open
    section.querySelectorAll(".request").forEach((row) => {
      const box = row.querySelector("textarea.comment");
      if (box && box.value) comments[row.dataset.request] = box.value;
      if (row.querySelector("details[open]")) opened.add(row.dataset.request);
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
        const details = row.querySelector("details");
        if (details && opened.has(row.dataset.request)) details.open = true;
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
    const values = { request: row.dataset.request, node: section.dataset.node, requester: row.dataset.requester };
    row.querySelectorAll("button").forEach((b) => (b.disabled = true));
    flash(say(decision === "approve" ? "approving" : "denying", values), "info");
    try {
      const info = await api("POST",
        `/nodes/${encodeURIComponent(section.dataset.node)}/requests/${row.dataset.request}/${decision}`,
        { comment });
      const account = row.dataset.kind === "account"; // an account asked through the network
      const done = info.status === "approved" ? (account ? "account_approved" : "approved")
        : info.status === "denied" ? (account ? "account_denied" : "denied") : "still_pending";
      flash(say(done, { ...values, requester: info.requester || values.requester }), "info");
    } catch (e) {
      flash(say("decide_failed", { ...values, decided: decision === "approve" ? "approved" : "denied",
        error: e.message }), "error");
    }
    await refreshSection(section);
  }

  async function stopTraining(button) {
    const row = button.closest(".request");
    const section = button.closest("section.node");
    const values = { request: row.dataset.request, node: section.dataset.node };
    button.disabled = true;
    flash(say("stopping_training", values), "info");
    try {
      await api("POST",
        `/nodes/${encodeURIComponent(section.dataset.node)}/requests/${row.dataset.request}/stop`,
        { reason: (row.querySelector("textarea.comment") || {}).value || "" });
      flash(say("training_stopped", values), "info");
    } catch (e) {
      flash(say("stop_training_failed", { ...values, error: e.message }), "error");
    }
    await refreshSection(section);
  }

  async function nodeAction(name, action) {
    flash(say(action === "start" ? "starting" : "stopping", { node: name }), "info");
    try {
      await api("POST", `/nodes/${encodeURIComponent(name)}/${action}`);
      window.location.reload();
    } catch (e) {
      flash(say(action === "start" ? "start_failed" : "stop_failed", { node: name, error: e.message }), "error");
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.classList.contains("approve")) decide(button, "approve");
    else if (button.classList.contains("deny")) decide(button, "deny");
    else if (button.classList.contains("stop-training")) stopTraining(button);
    else if (button.classList.contains("node-start")) nodeAction(button.dataset.node, "start");
    else if (button.classList.contains("node-stop")) nodeAction(button.dataset.node, "stop");
  });

  document.getElementById("new-node").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = String(new FormData(event.target).get("name") || "").trim();
    if (!name) {
      flash(say("no_name", {}), "error");
      return;
    }
    flash(say("creating", { node: name }), "info");
    try {
      await api("POST", "/nodes", { name });
      window.location.reload();
    } catch (e) {
      flash(say("create_failed", { node: name, error: e.message }), "error");
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
