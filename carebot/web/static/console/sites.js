// Admin page: the websites whose chat widget is a channel (web chat sites).
// Each site: its allowed origins, title, greeting, colour, offline text, snippet and the
// identity secret its server signs users' ids with.

import { h, replace } from "../common/dom.js";

function field(id, label, input) {
  input.id = id;
  return h("label", { for: id, class: "field" }, label, input);
}

function origins(text) {
  return text.split(/[\s,]+/).map((o) => o.trim()).filter(Boolean);
}

export async function sitesPage(main, ctx) {
  const { api, flash } = ctx;
  let sites = [];
  try { sites = (await api.get("/api/v1/sites")).items; } catch (err) { replace(main, h("p", { class: "error" }, err.message)); return; }
  const name = h("input", { required: true, maxlength: "100" });
  const allowed = h("input", { required: true, placeholder: "https://shop.example", size: "40" });
  const add = h("form", { class: "row-form", id: "add-site", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api.post("/api/v1/sites", { name: name.value, origins: origins(allowed.value) });
      flash(`Site ${name.value} added`);
      sitesPage(main, ctx);
    } catch (err) { flash(err.message, true); }
  } }, field("new-site-name", "Name", name), field("new-site-origins", "Allowed origins", allowed),
  h("button", { type: "submit" }, "Add site"));
  replace(main, h("section", { class: "admin" }, h("h2", {}, "Web chat sites"),
    h("p", { class: "hint" }, "Each site's pages embed the chat with its snippet; only its origins may. The secret signs logged-in users' ids on the site's server (docs/web-chat.md)."),
    add, sites.map((s) => siteForm(s, main, ctx))));
}

function siteForm(site, main, ctx) {
  const { api, flash } = ctx;
  const id = (n) => `site-${site.id}-${n}`;
  const inputs = {
    origins: h("input", { value: site.origins.join(" "), size: "50" }),
    title: h("input", { value: site.title, maxlength: "100" }),
    greeting: h("textarea", { rows: "2", maxlength: "1000" }),
    colour: h("input", { type: "color", value: site.colour }),
    offline_text: h("textarea", { rows: "2", maxlength: "500" }),
    enabled: h("input", { type: "checkbox", checked: site.enabled }),
  };
  inputs.greeting.value = site.greeting;
  inputs.offline_text.value = site.offline_text;
  const secret = h("code", { class: "secret-value" }, site.secret);
  const form = h("form", { class: "site", dataset: { site: site.name }, onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api.patch(`/api/v1/sites/${site.id}`, {
        origins: origins(inputs.origins.value), title: inputs.title.value,
        greeting: inputs.greeting.value, colour: inputs.colour.value,
        offline_text: inputs.offline_text.value, enabled: inputs.enabled.checked,
      });
      flash(`Site ${site.name} saved`);
    } catch (err) { flash(err.message, true); }
  } },
    h("h3", {}, site.name, " ", h("code", {}, site.key)),
    h("div", { class: "row-form" },
      field(id("origins"), "Allowed origins", inputs.origins),
      field(id("title"), "Title", inputs.title),
      field(id("colour"), "Colour", inputs.colour),
      field(id("enabled"), "Chat on", inputs.enabled)),
    h("div", { class: "row-form" },
      field(id("greeting"), "Greeting", inputs.greeting),
      field(id("offline"), "Offline text (no agent online)", inputs.offline_text)),
    h("p", {}, "Snippet: ", h("code", { class: "secret-value" }, site.snippet)),
    h("p", {}, "Identity secret: ", secret, " ",
      h("button", { type: "button", class: "link", onclick: async () => {
        if (!confirm(`New secret for ${site.name}? Signatures made with the old one stop working.`)) return;
        try { replace(secret, (await api.post(`/api/v1/sites/${site.id}/secret`, {})).secret); flash("New secret made"); }
        catch (err) { flash(err.message, true); }
      } }, "Rotate")),
    h("button", { type: "submit" }, "Save"),
  );
  return form;
}
