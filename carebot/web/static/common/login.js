// The login and invite forms the console and the dashboard share.

import { h, replace } from "./dom.js";

export function loginForm(api, title, onSession, message = "") {
  const error = h("p", { class: "error", role: "alert" }, message);
  const name = h("input", { id: "login-name", name: "name", autocomplete: "username", required: true });
  const password = h("input", {
    id: "login-password", name: "password", type: "password",
    autocomplete: "current-password", required: true,
  });
  return h("form", { class: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const session = await api.post("/api/v1/session", { name: name.value, password: password.value });
      await onSession(session);
    } catch (err) {
      replace(error, err.message);
      password.value = "";
    }
  } },
    h("h1", {}, title),
    h("label", { for: "login-name" }, "Name"), name,
    h("label", { for: "login-password" }, "Password"), password,
    h("button", { type: "submit" }, "Log in"),
    error,
  );
}

export function inviteForm(api, token, onSession) {
  const error = h("p", { class: "error", role: "alert" });
  const password = h("input", { id: "invite-password", type: "password", autocomplete: "new-password", minlength: "10", required: true });
  const again = h("input", { id: "invite-again", type: "password", autocomplete: "new-password", required: true });
  return h("form", { class: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    if (password.value !== again.value) { replace(error, "The two passwords differ."); return; }
    try {
      const session = await api.post("/api/v1/session/invite", { token, password: password.value });
      await onSession(session);
    } catch (err) {
      replace(error, err.message);
    }
  } },
    h("h1", {}, "Choose your password"),
    h("p", {}, "At least 10 characters. You log in with your name and this password."),
    h("label", { for: "invite-password" }, "Password"), password,
    h("label", { for: "invite-again" }, "Again"), again,
    h("button", { type: "submit" }, "Set password and log in"),
    error,
  );
}
