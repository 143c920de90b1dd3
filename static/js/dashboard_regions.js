// The dashboard's regions (templates/dashboard.html, elements with data-region): each
// loads as its own partial (hx-trigger "load"), or when a link that targets it is
// followed, and waits at most its data-timeout-ms for an answer. htmx leaves a region
// whose request fails as it was, so "Loading…" would stay forever: here an error
// answer, a request that could not be sent and one that got no answer in time each put
// a message in the region instead, naming what failed, with a Retry button that asks
// again (the region's "retry" trigger, or the link followed again).
(function () {
  function regionOf(elt) {
    if (!elt || !elt.closest) return null;
    var target = elt.getAttribute("hx-target");
    var region = target ? document.querySelector(target) : elt;
    return region ? region.closest("[data-region]") : null;
  }

  // The region's content, its heading kept.
  function show(region, node) {
    region.querySelectorAll(":scope > :not(h3)").forEach(function (old) {
      old.remove();
    });
    region.appendChild(node);
  }

  function loading(region) {
    var waiting = document.createElement("p");
    waiting.className = "muted";
    waiting.textContent = "Loading…";
    show(region, waiting);
  }

  function fail(elt, why) {
    var region = regionOf(elt);
    if (!region) return;
    var message = document.createElement("p");
    message.className = "error region-error";
    message.setAttribute("role", "alert");
    message.textContent = "Could not load " + region.dataset.region + ": " + why + ". ";
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", function () {
      loading(region);
      if (elt === region) window.htmx.trigger(region, "retry");
      else elt.click();
    });
    message.appendChild(retry);
    show(region, message);
  }

  // A region's own timeout (htmx has none by default: a request could wait forever).
  document.addEventListener("htmx:configRequest", function (event) {
    var region = regionOf(event.detail.elt);
    if (region && region.dataset.timeoutMs) {
      event.detail.timeout = Number(region.dataset.timeoutMs);
    }
  });
  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var type = xhr.getResponseHeader("Content-Type") || "";
    // A refusal in words (a bad filter: 400 "tau: must be a number") is shown as
    // sent; an error page's HTML is not.
    var text = type.indexOf("text/plain") === 0 ? ": " + xhr.responseText.slice(0, 300) : "";
    fail(event.detail.elt, "the server answered " + xhr.status + text);
  });
  document.addEventListener("htmx:sendError", function (event) {
    fail(event.detail.elt, "the server could not be reached");
  });
  document.addEventListener("htmx:timeout", function (event) {
    var region = regionOf(event.detail.elt);
    var seconds = region ? Number(region.dataset.timeoutMs) / 1000 : 0;
    fail(event.detail.elt, "no answer within " + seconds + " s");
  });
})();
