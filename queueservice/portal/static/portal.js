/* The portal's one script (no libraries). Every page works without it; with it, a
   workload's page keeps its facts live: it reads /portal/api/workloads/{WorkId} every
   2 seconds while the work is not finished and updates the elements marked data-fact
   (the region is aria-live="polite"). When the service does not answer it tries again,
   less and less often (up to every 30 s); a session ended stops it. Once the work is
   finished it stops, and reloads the part below the facts once (downloads, the quick
   look at the results). */
(function () {
  "use strict";
  var POLL_MS = 2000;
  var MAX_WAIT_MS = 30000;
  var facts = document.querySelector("[data-poll]");
  if (!facts || facts.getAttribute("data-finished") === "yes" || !window.fetch) {
    return;
  }
  var url = facts.getAttribute("data-poll");
  var note = document.getElementById("live-note");

  function say(text) {
    if (note) { note.textContent = text; }
  }

  function show(values) {
    var marked = facts.querySelectorAll("[data-fact]");
    for (var i = 0; i < marked.length; i++) {
      var name = marked[i].getAttribute("data-fact");
      var value = values[name] === undefined || values[name] === null ? "" : String(values[name]);
      if (marked[i].textContent !== value) { marked[i].textContent = value; }
    }
  }

  function reloadAfter() {
    /* the part below the facts, from the page as the server renders it now */
    fetch(window.location.href, {credentials: "same-origin"})
      .then(function (answer) {
        if (!answer.ok) { throw new Error(String(answer.status)); }
        return answer.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("after");
        var old = document.getElementById("after");
        if (fresh && old) { old.replaceWith(document.importNode(fresh, true)); }
        say("The workload has finished.");
      })
      .catch(function () {
        say("The workload has finished: reload the page to see its results.");
      });
  }

  var failures = 0;

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (answer) {
        if (answer.status === 401) {  /* the session ended: stop */
          say("Live updates stopped: your session has ended. Log in again.");
          return null;
        }
        if (answer.status === 404) {  /* no longer this person's to see: stop */
          say("Live updates stopped: this workload is not found any more.");
          return null;
        }
        if (!answer.ok) { throw new Error(String(answer.status)); }
        return answer.json();
      })
      .then(function (values) {
        if (values === null) { return; }
        if (failures > 0) { say(""); }
        failures = 0;
        show(values);
        if (values.Finished) {
          facts.setAttribute("data-finished", "yes");
          reloadAfter();
        } else {
          window.setTimeout(poll, POLL_MS);
        }
      })
      .catch(function () {
        /* the service or the network did not answer: try again, less and less often */
        failures += 1;
        say("The service did not answer: trying again (or reload the page).");
        window.setTimeout(poll, Math.min(POLL_MS * Math.pow(2, failures), MAX_WAIT_MS));
      });
  }

  window.setTimeout(poll, POLL_MS);
}());
