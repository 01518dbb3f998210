// Live state of a prediction: Server-Sent Events first, polling when they fail.
// Without JavaScript the page refreshes itself (a meta refresh inside <noscript>).
(function () {
  "use strict";
  var box = document.getElementById("prediction");
  if (!box || box.dataset.final === "true") { return; }
  var FINAL = ["rejected", "done", "failed", "cancelled"];
  var shown = document.getElementById("state").textContent;
  var source = null;
  var pollTimer = null;

  // Replace the result block with the server's rendering of the current state.
  function refresh() {
    return fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("result");
        if (fresh) { document.getElementById("result").replaceWith(fresh); }
      });
  }

  function update(state) {
    if (state === shown) { return; }
    shown = state;
    var badge = document.getElementById("state");
    badge.textContent = state;
    badge.className = "state " + state;
    refresh();
    if (FINAL.indexOf(state) >= 0) { stop(); }
  }

  function stop() {
    if (source) { source.close(); source = null; }
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  }

  function poll() {
    if (pollTimer) { return; }
    pollTimer = setInterval(function () {
      fetch(box.dataset.status, { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (prediction) { update(prediction.state); })
        .catch(function () { /* try again at the next tick */ });
    }, 2000);
  }

  if (!window.EventSource) { poll(); return; }
  source = new EventSource(box.dataset.events);
  source.addEventListener("state", function (message) {
    update(JSON.parse(message.data).state);
  });
  source.onerror = function () {
    // The browser retries on its own; poll meanwhile, and for good once it gives up.
    poll();
  };
  source.onopen = function () {
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  };
}());
