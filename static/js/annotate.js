// Keyboard-first labelling. The form's radio buttons are the state: keys only set
// them, so what is submitted is exactly what the page shows, and the page works
// without this script. Listeners sit on document, so htmx swaps need no rebinding.
(function () {
  // Let htmx swap 422 answers (a label the server refused, with its message).
  if (window.htmx) {
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "422", swap: true },
      { code: "409", swap: true }, // a claim refused: the read-only trace and why
      { code: "[45]..", swap: false, error: true },
    ];
    // Settle at once: with a delay, htmx restores the new page's attributes (the
    // focused step among them) a moment after the swap and would undo a key pressed
    // in that moment.
    htmx.config.defaultSettleDelay = 0;
  }

  document.documentElement.classList.add("js");

  // The project's optional clock: time since this trace appeared (each new trace swapped
  // in brings a fresh element, so it starts again at 0:00).
  setInterval(function () {
    var timer = document.getElementById("label-timer");
    if (!timer) return;
    if (!timer.dataset.start) timer.dataset.start = String(Date.now());
    var seconds = Math.floor((Date.now() - Number(timer.dataset.start)) / 1000);
    var minutes = Math.floor(seconds / 60);
    timer.textContent = minutes + ":" + String(seconds % 60).padStart(2, "0");
  }, 1000);

  var RATE_KEYS = { "1": "-1", "-": "-1", "2": "0", "0": "0", "3": "1", "+": "1", "=": "1" };
  var FLAG_KEYS = { b: "bad_problem", g: "gave_up", f: "bad_step_split" };

  function form() {
    var f = document.getElementById("label-form");
    return f && !f.hasAttribute("inert") ? f : null; // a read-only trace takes no keys
  }
  // A message about what was entered goes as soon as the annotator changes it.
  function clearError() {
    var error = document.getElementById("label-error");
    if (error) error.remove();
  }
  function steps() { return Array.prototype.slice.call(document.querySelectorAll(".label-steps .step")); }
  function focused() { return document.querySelector(".label-steps .step.focused"); }
  function indexOf(li) { return parseInt(li.dataset.index, 10); }

  function focusStep(i) {
    var all = steps();
    if (!all.length) return;
    i = Math.max(0, Math.min(all.length - 1, i));
    all.forEach(function (li) { li.classList.remove("focused"); });
    all[i].classList.add("focused");
    all[i].focus({ preventScroll: true });
    all[i].scrollIntoView({ block: "nearest" });
  }

  function setRating(i, value) {
    var input = form().querySelector('input[name="rating-' + i + '"][value="' + value + '"]');
    if (input) input.checked = true;
  }
  function rating(i) {
    var input = form().querySelector('input[name="rating-' + i + '"]:checked');
    return input ? input.value : "";
  }
  function setFirstError(value) {
    var input = form().querySelector('input[name="first_error_step"][value="' + value + '"]');
    if (input) input.checked = true;
    steps().forEach(function (li) { li.classList.toggle("first-error", String(indexOf(li)) === String(value)); });
  }
  function firstError() {
    var input = form().querySelector('input[name="first_error_step"]:checked');
    return input ? input.value : "";
  }

  function rate(value) {
    var li = focused();
    if (!li) return;
    var i = indexOf(li);
    setRating(i, value);
    // A manual rating that contradicts the marked verdict hands the verdict back to
    // the ratings (the server derives the first error from them).
    var fe = firstError();
    if (fe !== "" && ((value === "-1" && (fe === "-1" || parseInt(fe, 10) > i)) || (fe === String(i) && value !== "-1"))) {
      setFirstError("");
    }
    if (i < steps().length - 1) focusStep(i + 1);
  }

  function markFirstError() {
    var li = focused();
    if (!li) return;
    var k = indexOf(li);
    steps().forEach(function (step) {
      var i = indexOf(step);
      if (i < k && (rating(i) === "" || rating(i) === "-1")) setRating(i, "1");
      if (i > k) setRating(i, "");
    });
    setRating(k, "-1");
    setFirstError(k);
  }

  function markAllCorrect() {
    steps().forEach(function (step) { setRating(indexOf(step), "1"); });
    setFirstError("-1");
  }

  // The flag keys toggle: pressing the key of the flag that is set clears it (and
  // hands the keys back to the steps), another flag key switches to its flag.
  function flag(kind) {
    var select = document.getElementById("flag");
    var reason = document.getElementById("flag-reason");
    if (!select || !reason) return;
    if (select.value === kind) {
      clearFlag();
      if (document.activeElement === reason) focusStep(focused() ? indexOf(focused()) : 0);
      return;
    }
    select.value = kind;
    document.getElementById("flag-box").classList.add("flagged");
    reason.focus();
  }
  function clearFlag() {
    var select = document.getElementById("flag");
    var reason = document.getElementById("flag-reason");
    if (!select || !reason) return;
    select.value = "";
    reason.value = "";
    document.getElementById("flag-box").classList.remove("flagged");
  }

  function toggleShortcuts() {
    var dialog = document.getElementById("shortcuts");
    if (!dialog) return;
    if (dialog.open) dialog.close(); else dialog.showModal();
  }

  function click(id) {
    var button = document.getElementById(id);
    if (button && !button.disabled) button.click();
  }

  function act(key) {
    if (key === "?") { toggleShortcuts(); return true; }
    if (key === "u") { click("undo"); return true; }
    if (!form()) {
      // An empty workspace starts the queue; a read-only trace is claimed.
      if (key === "Enter") { click(document.getElementById("start") ? "start" : "claim"); return true; }
      return false;
    }
    if (key !== "Enter") clearError();
    var current = focused() ? indexOf(focused()) : -1;
    if (key === "j" || key === "ArrowDown") focusStep(current + 1);
    else if (key === "k" || key === "ArrowUp") focusStep(current < 0 ? 0 : current - 1);
    else if (key in RATE_KEYS) rate(RATE_KEYS[key]);
    else if (key === "e") markFirstError();
    else if (key === "c") markAllCorrect();
    else if (key === "Enter") form().requestSubmit(document.getElementById("submit"));
    else if (key === "s") click("skip");
    else if (key in FLAG_KEYS) flag(FLAG_KEYS[key]);
    else return false;
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    var typing = target && (target.tagName === "TEXTAREA" || target.tagName === "SELECT" ||
      (target.tagName === "INPUT" && target.type !== "radio" && target.type !== "checkbox"));
    if (typing) {
      // A flag key focuses the empty reason box: until a reason is typed there, the
      // flag keys keep their meaning (b b clears, b g switches), else the second key
      // would be typed as the reason. Capitals are text: "Both answers" starts with B.
      if (target.id === "flag-reason" && target.value === "" && event.key in FLAG_KEYS) {
        event.preventDefault();
        clearError();
        flag(FLAG_KEYS[event.key]);
        return;
      }
      if (event.key === "Escape") {
        if (target.id === "flag-reason" || target.id === "flag") { clearFlag(); clearError(); }
        target.blur();
        focusStep(focused() ? indexOf(focused()) : 0);
      }
      return; // Enter in the reason field submits the form the ordinary way.
    }
    if (target && target.tagName === "BUTTON" && event.key === "Enter") return;
    if (act(event.key)) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-key]");
    if (!button) return;
    event.preventDefault();
    act(button.dataset.key);
  });

  // Clicking a step focuses it, so mouse and keyboard can be mixed.
  document.addEventListener("focusin", function (event) {
    var li = event.target.closest && event.target.closest(".label-steps .step");
    if (li && !li.classList.contains("focused")) {
      steps().forEach(function (s) { s.classList.remove("focused"); });
      li.classList.add("focused");
    }
  });

  // Focus the first unrated step of a freshly shown trace, then mark the workspace
  // ready (tests and scripts wait for that before typing).
  function start() {
    var workspace = document.getElementById("workspace");
    if (!form() || !workspace || workspace.dataset.ready) return;
    var first = steps().findIndex(function (li) { return rating(indexOf(li)) === ""; });
    focusStep(first < 0 ? 0 : first);
    workspace.dataset.ready = "1";
  }
  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("htmx:afterSettle", start);
})();
