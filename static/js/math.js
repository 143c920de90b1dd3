// Render math in elements marked .math with KaTeX, from our own static files.
//
// Text reaches the page escaped by Django, and we only ever read textContent and
// write text nodes or KaTeX's own nodes, so step text can never become HTML.
//
// Which dollars are math: $$...$$, \[...\], \(...\) always; $...$ by Pandoc's rule
// for tex_math_dollars (https://pandoc.org/MANUAL.html#math): "The opening $ must
// have a non-space character immediately to its right, while the closing $ must
// have a non-space character immediately to its left, and must not be followed
// immediately by a digit." That keeps PRM800K's "$G$" and "$ABC,$" and leaves
// GSM8K's "$15 more ... saves her $15" as text (the would-be closing $ is followed by
// a digit). Additions for GSM8K, checked on every file in ../shared/data
// (tests/browser/test_math.py): no $ next to "<<", the calculator note that follows a
// price there ("40 x $1 = $<<40*1=40>>40"), and a $...$ formula stays on one line
// (model solutions write prices after the number: "... = 45$.\nThe total ... 180$").
// \$ is a literal dollar. Each formula renders on its own: one that KaTeX
// rejects (or that overflows its stack) is shown as its source text and the others
// still render.
//
// KaTeX's time grows steeply with a formula's nesting: one 12 KB nested formula took
// 78 s to render, and the queue can serve it. A formula longer than MAX_CHARS or
// nested deeper than MAX_DEPTH (braces and \left...\right) is shown as its source
// text without reaching KaTeX. Every formula in ../shared/data is within both by far
// (at most 453 characters and 4 levels).
(function (root) {
  var MAX_CHARS = 2000;
  var MAX_DEPTH = 16;
  var PAIRS = [
    { open: "$$", close: "$$", display: true },
    { open: "\\[", close: "\\]", display: true },
    { open: "\\(", close: "\\)", display: false },
  ];

  function isSpace(ch) { return ch === undefined || /\s/.test(ch); }
  function isDigit(ch) { return ch !== undefined && ch >= "0" && ch <= "9"; }

  // The index of the $ closing a single-dollar formula opened at `start`, or -1.
  function closingDollar(text, start) {
    if (isSpace(text[start + 1]) || text[start + 1] === "$" || text.startsWith("<<", start + 1)) {
      return -1;
    }
    for (var j = start + 1; j < text.length; j++) {
      var ch = text[j];
      if (ch === "\\") { j++; continue; } // \$ inside math is a literal dollar
      if (ch === "\n") return -1; // never across lines: a step's lines are sentences
      if (ch === "<" && text[j + 1] === "<") return -1; // a calculator note is no formula
      if (ch !== "$") continue;
      if (!isSpace(text[j - 1]) && !isDigit(text[j + 1]) && !text.startsWith("<<", j + 1)) return j;
      return -1; // Pandoc: the first candidate decides; no math here
    }
    return -1;
  }

  // Split text into [{math: false, text}, {math: true, tex, display, source}, ...].
  function splitMath(text) {
    var parts = [];
    var plain = "";
    var i = 0;
    function flush() { if (plain) { parts.push({ math: false, text: plain }); plain = ""; } }
    while (i < text.length) {
      var ch = text[i];
      var pair = null;
      for (var p = 0; p < PAIRS.length; p++) {
        if (text.startsWith(PAIRS[p].open, i)) { pair = PAIRS[p]; break; }
      }
      if (pair) {
        var end = text.indexOf(pair.close, i + pair.open.length);
        if (end > i + pair.open.length) {
          flush();
          parts.push({
            math: true,
            tex: text.slice(i + pair.open.length, end),
            display: pair.display,
            source: text.slice(i, end + pair.close.length),
          });
          i = end + pair.close.length;
          continue;
        }
      }
      if (ch === "\\" && text[i + 1] === "$") { plain += "$"; i += 2; continue; }
      if (ch === "$" && text[i + 1] !== "$") {
        var close = closingDollar(text, i);
        if (close > 0) {
          flush();
          parts.push({ math: true, tex: text.slice(i + 1, close), display: false, source: text.slice(i, close + 1) });
          i = close + 1;
          continue;
        }
      }
      plain += ch;
      i++;
    }
    flush();
    return parts;
  }

  // Why `tex` is not given to KaTeX, or "" when it may be: a bounded scan.
  function tooLarge(tex) {
    if (tex.length > MAX_CHARS) return "longer than " + MAX_CHARS + " characters";
    var depth = 0;
    for (var i = 0; i < tex.length; i++) {
      var ch = tex[i];
      if (ch === "\\") {
        if (tex.startsWith("left", i + 1)) depth++;
        else if (tex.startsWith("right", i + 1)) depth--;
        i++; // an escaped brace is no group
      } else if (ch === "{") depth++;
      else if (ch === "}") depth--;
      if (depth > MAX_DEPTH) return "nested deeper than " + MAX_DEPTH + " levels";
    }
    return "";
  }

  function renderElement(el) {
    if (el.dataset.mathDone) return;
    var parts = splitMath(el.textContent);
    el.dataset.mathDone = "1";
    if (!parts.some(function (part) { return part.math; })) return;
    var fragment = document.createDocumentFragment();
    parts.forEach(function (part) {
      if (!part.math) { fragment.appendChild(document.createTextNode(part.text)); return; }
      var span = document.createElement("span");
      var tooBig = tooLarge(part.tex);
      if (tooBig) {
        span.textContent = part.source;
        span.className = "math-error math-too-large";
        span.title = "not rendered: " + tooBig;
        fragment.appendChild(span);
        return;
      }
      try {
        root.katex.render(part.tex, span, {
          displayMode: part.display, throwOnError: true, trust: false, maxExpand: 1000,
        });
        span.className = "math-ok";
      } catch (err) {
        // A ParseError, or a RangeError from a formula nested too deep: its text.
        span.textContent = part.source;
        span.className = "math-error";
        span.title = "not rendered: " + (err && err.message ? err.message : err);
      }
      fragment.appendChild(span);
    });
    el.textContent = "";
    el.appendChild(fragment);
  }

  function render(scope) {
    if (!root.katex) return;
    (scope || document).querySelectorAll(".math").forEach(function (el) {
      try { renderElement(el); } catch (err) { /* leave this element as text */ }
    });
  }

  root.stepwiseSplitMath = splitMath;
  root.stepwiseMathTooLarge = tooLarge;
  root.stepwiseRenderMath = render;
  if (typeof document !== "undefined") {
    document.addEventListener("DOMContentLoaded", function () { render(document); });
    document.addEventListener("htmx:afterSwap", function (e) { render(e.target); });
  }
  if (typeof module !== "undefined") module.exports = { splitMath: splitMath, tooLarge: tooLarge };
})(typeof window !== "undefined" ? window : globalThis);
