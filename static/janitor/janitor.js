// Janitor's dashboard behaviour around htmx: no answer is silent, no button is pressed twice.
(function () {
  "use strict";

  var DEFAULT_MESSAGES = {
    0: "Janitor could not be reached. Check your connection, then try again.",
    400: "The request was refused as malformed (400).",
    403: "Your role does not allow this (403).",
    404: "That item no longer exists (404). Reload the page to see the current list.",
    409: "This changed in the meantime (409). Reload the page and try again.",
    422: "This could not be done (422).",
    429: "Too many requests (429). Wait a moment, then try again.",
    500: "Janitor hit an error (500). Nothing may have been saved: try again, or tell an Admin.",
    502: "Janitor is not answering (502). Try again in a minute.",
    503: "Janitor is not available right now (503). Try again in a minute.",
  };

  function toast(message, kind) {
    var box = document.getElementById("toasts");
    if (!box) { window.alert(message); return; }
    var item = document.createElement("div");
    item.className = "toast " + (kind || "error");
    item.setAttribute("role", "alert");
    var text = document.createElement("span");
    text.textContent = message;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "link";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", function () { item.remove(); });
    item.appendChild(text);
    item.appendChild(close);
    box.appendChild(item);
    window.setTimeout(function () { item.remove(); }, 12000);
  }

  // The words a refusal carries: a text/plain body, or the page's own message element.
  function messageFrom(xhr) {
    var status = xhr.status;
    var fallback = DEFAULT_MESSAGES[status] || ("The request failed (" + status + ").");
    var type = (xhr.getResponseHeader("Content-Type") || "").toLowerCase();
    var body = xhr.responseText || "";
    if (type.indexOf("text/plain") === 0 && body.trim()) {
      return body.trim().slice(0, 300) + " (" + status + ")";
    }
    if (type.indexOf("text/html") === 0 && body) {
      var doc = new DOMParser().parseFromString(body, "text/html");
      var node = doc.querySelector("[data-error-message], [role=alert], .error, main p, h1");
      if (node && node.textContent.trim()) {
        return node.textContent.trim().replace(/\s+/g, " ").slice(0, 300) + " (" + status + ")";
      }
    }
    return fallback;
  }

  function isFragment(xhr) {
    var type = (xhr.getResponseHeader("Content-Type") || "").toLowerCase();
    return type.indexOf("text/html") === 0 && !/<html[\s>]/i.test(xhr.responseText || "");
  }

  function isLoginPage(xhr) {
    var box = document.getElementById("toasts");
    var login = box && box.dataset.loginUrl;
    if (!login || !xhr.responseURL) { return false; }
    try { return new URL(xhr.responseURL).pathname === login; } catch (e) { return false; }
  }

  document.addEventListener("htmx:beforeSwap", function (evt) {
    var xhr = evt.detail.xhr;
    // A redirect the server did not turn into HX-Redirect still must not paste the sign-in
    // page into a row: go there as a page, and come back here after signing in.
    if (isLoginPage(xhr)) {
      evt.detail.shouldSwap = false;
      var next = encodeURIComponent(window.location.pathname + window.location.search);
      window.location.assign(document.getElementById("toasts").dataset.loginUrl + "?next=" + next);
      return;
    }
    if (xhr.status < 400) { return; }
    // A refusal the view rendered as a fragment (the row with its message, "already running")
    // is swapped in where the action was; anything else (a full error page, plain text) is
    // shown as a toast and the page stays as it was.
    if (isFragment(xhr) && xhr.status < 500 && xhr.status !== 403 && xhr.status !== 404) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
      return;
    }
    evt.detail.shouldSwap = false;
    toast(messageFrom(xhr), "error");
  });

  document.addEventListener("htmx:sendError", function () {
    toast(DEFAULT_MESSAGES[0], "error");
  });
  document.addEventListener("htmx:timeout", function () {
    toast("Janitor took too long to answer. It may still be working: reload in a moment.", "error");
  });

  // Busy state: the control that sent a request is disabled until the answer arrives.
  function controlsOf(elt) {
    if (!elt) { return []; }
    if (elt.tagName === "FORM") {
      return Array.prototype.slice.call(elt.querySelectorAll("button, input[type=submit]"));
    }
    if (elt.tagName === "BUTTON" || elt.tagName === "A") { return [elt]; }
    return [];
  }

  // A polling region (data-polling) that holds a half-written comment waits: replacing it
  // would throw away what a person is typing. It refreshes once the field is empty or left.
  function typingIn(elt) {
    var fields = elt.querySelectorAll("textarea, input[type=text]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i] === document.activeElement || fields[i].value.trim() !== "") { return true; }
    }
    return false;
  }

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var elt = evt.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-polling") && typingIn(elt)) {
      evt.preventDefault();
      return;
    }
    if (elt && elt.dataset && elt.dataset.busy === "1" && elt.tagName === "FORM") {
      evt.preventDefault();  // a second submit while the first is in flight
      return;
    }
    var controls = controlsOf(elt);
    if (!controls.length) { return; }
    elt.dataset.busy = "1";
    controls.forEach(function (control) {
      control.setAttribute("aria-busy", "true");
      if (control.tagName === "BUTTON" || control.tagName === "INPUT") { control.disabled = true; }
    });
  });

  document.addEventListener("htmx:afterRequest", function (evt) {
    var elt = evt.detail.elt;
    if (!elt || !elt.dataset) { return; }
    delete elt.dataset.busy;
    controlsOf(elt).forEach(function (control) {
      control.removeAttribute("aria-busy");
      if (control.tagName === "BUTTON" || control.tagName === "INPUT") { control.disabled = false; }
    });
  });

  // Plain (non-htmx) forms: one submit only. A download leaves the page in place, so the
  // button comes back after a few seconds; a navigation replaces the page anyway.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (!(form instanceof HTMLFormElement) || form.hasAttribute("hx-post") ||
        form.hasAttribute("hx-get") || form.method.toLowerCase() !== "post") { return; }
    if (form.dataset.busy === "1") { evt.preventDefault(); return; }
    form.dataset.busy = "1";
    var controls = controlsOf(form);
    window.setTimeout(function () {
      controls.forEach(function (control) { control.disabled = true; control.setAttribute("aria-busy", "true"); });
    }, 0);
    window.setTimeout(function () {
      delete form.dataset.busy;
      controls.forEach(function (control) { control.disabled = false; control.removeAttribute("aria-busy"); });
      // Panels listing exports ("Latest exports") reload on this (hx-trigger="... from:body").
      document.body.dispatchEvent(new CustomEvent("exportdone", { bubbles: true }));
    }, 2500);
  }, true);
})();
