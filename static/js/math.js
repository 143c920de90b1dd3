// Render math in elements marked .math with KaTeX, from our own static files.
// Text reaches the page escaped by Django; KaTeX builds its own nodes and never
// interprets HTML. Single-dollar math is only enabled where the text looks like
// LaTeX, so GSM8K prices ("$18 ... $2") are not taken for formulas.
(function () {
  var base = [
    { left: "$$", right: "$$", display: true },
    { left: "\\[", right: "\\]", display: true },
    { left: "\\(", right: "\\)", display: false },
  ];
  var latexy = /\\[a-zA-Z]+|\^|_\{/;
  function render(root) {
    if (!window.renderMathInElement) return;
    (root || document).querySelectorAll(".math").forEach(function (el) {
      var delimiters = base.slice();
      if (latexy.test(el.textContent)) delimiters.push({ left: "$", right: "$", display: false });
      window.renderMathInElement(el, { delimiters: delimiters, throwOnError: false, trust: false });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { render(document); });
  document.addEventListener("htmx:afterSwap", function (e) { render(e.target); });
  window.stepwiseRenderMath = render;
})();
