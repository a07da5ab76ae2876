// Admin pages of the console: agents (admins), resolution codes (admins), canned replies
// (managers and admins). Secrets shown once (new tokens, invite links) are never stored.

import { h, replace } from "../common/dom.js";
import { sitesPage } from "./sites.js";

export function renderAdmin(main, page, ctx) {
  const pages = { agents: agentsPage, codes: codesPage, canned: cannedPage, sites: sitesPage };
  const render = pages[page];
  if (!render) { replace(main, h("p", { class: "error" }, "No such page.")); return; }
  render(main, ctx);
}

function field(id, label, input) {
  input.id = id;
  return h("label", { for: id, class: "field" }, label, input);
}

function secretBox(title, value) {
  return h("div", { class: "secret", role: "alert" },
    h("strong", {}, title), h("code", { class: "secret-value" }, value),
    h("p", { class: "hint" }, "Shown once. Copy it now and hand it over safely."));
}

function inviteUrl(data) {
  // The server answers with the link (absolute when CAREBOT_PUBLIC_URL is set).
  const url = data.invite?.url || "";
  return url.startsWith("/") ? `${location.origin}${url}` : url;
}

async function agentsPage(main, ctx) {
  const { api, flash, reloadShared } = ctx;
  const shown = h("div", { id: "shown-secret" });
  let agents = [];
  try { agents = (await api.get("/api/v1/agents")).items; } catch (err) { replace(main, h("p", { class: "error" }, err.message)); return; }
  const name = h("input", { required: true, maxlength: "100" });
  const role = h("select", {}, ["agent", "manager", "admin"].map((r) => h("option", { value: r }, r)));
  const capacity = h("input", { type: "number", min: "0", max: "1000", value: "3" });
  const add = h("form", { class: "row-form", id: "add-agent", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const data = await api.post("/api/v1/agents", { name: name.value, role: role.value, capacity: Number(capacity.value) });
      replace(shown, secretBox(`Invite link for ${data.name}`, inviteUrl(data)));
      await reloadShared();
      agentsPage(main, ctx).then(() => document.getElementById("shown-secret")?.replaceWith(shown));
    } catch (err) { flash(err.message, true); }
  } }, field("new-agent-name", "Name", name), field("new-agent-role", "Role", role), field("new-agent-capacity", "Capacity", capacity), h("button", { type: "submit" }, "Add agent"));

  const rows = agents.map((a) => {
    const roleSel = h("select", { "aria-label": `Role of ${a.name}` }, ["agent", "manager", "admin"].map((r) => h("option", { value: r, selected: a.role === r }, r)));
    const cap = h("input", { type: "number", min: "0", max: "1000", value: String(a.capacity), "aria-label": `Capacity of ${a.name}` });
    const change = async (body, done) => {
      try {
        const data = await api.patch(`/api/v1/agents/${a.id}`, body);
        flash(done);
        await reloadShared();
        return data;
      } catch (err) { flash(err.message, true); return null; }
    };
    return h("tr", { dataset: { agent: a.name } },
      h("td", {}, a.name), h("td", {}, roleSel), h("td", {}, cap),
      h("td", {}, a.disabled ? "disabled" : a.status), h("td", {}, String(a.open_conversations ?? "")),
      h("td", { class: "row-actions" },
        h("button", { type: "button", onclick: () => change({ role: roleSel.value, capacity: Number(cap.value) }, "Saved") }, "Save"),
        h("button", { type: "button", class: a.disabled ? "" : "danger", onclick: async () => {
          if (await change({ disabled: !a.disabled }, a.disabled ? "Enabled" : "Disabled")) agentsPage(main, ctx);
        } }, a.disabled ? "Enable" : "Disable"),
        h("button", { type: "button", onclick: async () => {
          try { const data = await api.post(`/api/v1/agents/${a.id}/token`); replace(shown, secretBox(`New API token for ${a.name}`, data.token)); }
          catch (err) { flash(err.message, true); }
        } }, "New API token"),
        h("button", { type: "button", onclick: async () => {
          try { const data = await api.post(`/api/v1/agents/${a.id}/invite`); replace(shown, secretBox(`Password reset link for ${a.name}`, inviteUrl(data))); }
          catch (err) { flash(err.message, true); }
        } }, "Reset password"),
      ),
    );
  });
  replace(main, h("h2", {}, "Agents"), shown, add,
    h("table", { class: "grid", id: "agents-table" },
      h("thead", {}, h("tr", {}, ["Name", "Role", "Capacity", "Status", "Open", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
}

async function codesPage(main, ctx) {
  const { api, flash, reloadShared } = ctx;
  let codes = [];
  try { codes = (await api.get("/api/v1/resolution-codes")).items; } catch (err) { replace(main, h("p", { class: "error" }, err.message)); return; }
  const code = h("input", { required: true, maxlength: "64", pattern: "[a-z0-9_]+" });
  const label = h("input", { required: true, maxlength: "200" });
  const survey = h("input", { type: "checkbox", checked: true });
  const reopen = h("input", { type: "checkbox", checked: true });
  const add = h("form", { class: "row-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api.post("/api/v1/resolution-codes", { code: code.value, label: label.value, survey: survey.checked, may_reopen: reopen.checked });
      await reloadShared();
      codesPage(main, ctx);
    } catch (err) { flash(err.message, true); }
  } }, field("new-code", "Code", code), field("new-code-label", "Label", label), field("new-code-survey", "Survey after", survey), field("new-code-reopen", "May reopen", reopen), h("button", { type: "submit" }, "Add code"));
  const toggle = async (c, body) => {
    try { await api.patch(`/api/v1/resolution-codes/${encodeURIComponent(c.code)}`, body); await reloadShared(); codesPage(main, ctx); }
    catch (err) { flash(err.message, true); }
  };
  replace(main, h("h2", {}, "Resolution codes"), add,
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["Code", "Label", "Survey", "May reopen", "Enabled"].map((t) => h("th", {}, t)))),
      h("tbody", {}, codes.map((c) => h("tr", {},
        h("td", {}, h("code", {}, c.code)), h("td", {}, c.label),
        h("td", {}, h("input", { type: "checkbox", checked: c.survey, "aria-label": `survey after ${c.code}`, onchange: (ev) => toggle(c, { survey: ev.target.checked }) })),
        h("td", {}, h("input", { type: "checkbox", checked: c.may_reopen, "aria-label": `${c.code} may reopen`, onchange: (ev) => toggle(c, { may_reopen: ev.target.checked }) })),
        h("td", {}, h("input", { type: "checkbox", checked: c.enabled, "aria-label": `${c.code} enabled`, onchange: (ev) => toggle(c, { enabled: ev.target.checked }) })),
      )))));
}

async function cannedPage(main, ctx) {
  const { api, flash, reloadShared } = ctx;
  let items = [];
  try { items = (await api.get("/api/v1/canned-replies")).items; } catch (err) { replace(main, h("p", { class: "error" }, err.message)); return; }
  const shortcut = h("input", { required: true, maxlength: "32", pattern: "[a-z0-9_-]+" });
  const title = h("input", { required: true, maxlength: "100" });
  const text = h("textarea", { required: true, rows: "3" });
  const add = h("form", { class: "row-form", id: "add-canned", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api.post("/api/v1/canned-replies", { shortcut: shortcut.value, title: title.value, text: text.value });
      await reloadShared();
      cannedPage(main, ctx);
    } catch (err) { flash(err.message, true); }
  } }, field("new-canned-shortcut", "Shortcut", shortcut), field("new-canned-title", "Title", title), field("new-canned-text", "Text", text), h("button", { type: "submit" }, "Add canned reply"));
  replace(main, h("h2", {}, "Canned replies"), h("p", { class: "hint" }, "Agents type /shortcut in the composer to insert one."), add,
    h("table", { class: "grid", id: "canned-table" },
      h("thead", {}, h("tr", {}, ["Shortcut", "Title", "Text", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, items.map((c) => h("tr", {},
        h("td", {}, h("code", {}, `/${c.shortcut}`)), h("td", {}, c.title), h("td", { class: "pre" }, c.text),
        h("td", {}, h("button", { type: "button", class: "danger", onclick: async () => {
          try { await api.del(`/api/v1/canned-replies/${c.id}`); await reloadShared(); cannedPage(main, ctx); }
          catch (err) { flash(err.message, true); }
        } }, "Delete")),
      )))));
}
