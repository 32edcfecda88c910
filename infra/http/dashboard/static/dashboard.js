// caselog dashboard: the few things htmx does not do by itself. No eval, no inline script (CSP).
(function () {
  "use strict";
  function signIn() {
    window.location.assign("/dashboard/sign-in?next=" + encodeURIComponent(window.location.pathname + window.location.search));
  }
  function live(text, state) {
    var el = document.getElementById("live");
    if (el) { el.textContent = text; el.className = "live " + state; }
  }
  // a fragment refused for want of a session: the session ended or expired
  document.addEventListener("htmx:responseError", function (e) {
    if (e.detail && e.detail.xhr && e.detail.xhr.status === 401) { signIn(); }
  });
  document.addEventListener("htmx:sseOpen", function () { live("live", "on"); });
  document.addEventListener("htmx:sseError", function () { live("reconnecting", "off"); });
  // the stream says the session ended (sse-close="signed-out" closes it)
  document.addEventListener("htmx:sseClose", function (e) {
    if (e.detail && e.detail.type === "message") { live("signed out", "off"); signIn(); }
  });
  // how many changes this page has been told of (a test and a curious person can read it)
  var seen = {};
  document.addEventListener("htmx:sseMessage", function (e) {
    var message = e.detail;
    if (message && message.type === "changed" && !seen[message.lastEventId]) {
      seen[message.lastEventId] = true;
      document.body.dataset.changes = String(Number(document.body.dataset.changes || "0") + 1);
      live("live: updated " + new Date().toLocaleTimeString(), "on");
    }
  });
})();
