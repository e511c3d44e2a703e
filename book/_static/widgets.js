// Saved ipywidgets on the book's pages (chapters 8 and 9), rendered in the browser by
// two scripts from cdn.jsdelivr.net: require.js and @jupyter-widgets/html-manager.
// This file makes that work without errors, and fail visibly where it cannot:
//  1. html-manager typesets widget labels with MathJax 2's `MathJax.Hub.Queue`; the book
//     loads MathJax 3, which has no `Hub`, so every label threw a TypeError. A small
//     `Hub` hands the call to MathJax 3's `typesetPromise` (or does nothing without it).
//  2. Where the scripts cannot load (offline, blocked), the widget would leave an
//     empty space: a note says what is missing and where the widget's output went.
(function () {
  "use strict";
  var VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]';
  var NOTE = "Interactive widget: it did not render because its scripts (from " +
    "cdn.jsdelivr.net) could not be loaded. The sample it generated is printed by the " +
    "next cell; open the chapter in Colab to use the widget.";

  function addMathJaxHub() {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub) return;
    mathjax.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          var element = Array.isArray(job) && job[0] === "Typeset" ? job[2] : null;
          if (element && typeof window.MathJax.typesetPromise === "function") {
            window.MathJax.typesetPromise([element]).catch(function () {});
          }
        });
      },
    };
  }

  function rendered(output) {
    return output.querySelector(".jupyter-widgets, .widget-subarea") !== null;
  }

  function markUnrendered() {
    document.querySelectorAll(VIEW).forEach(function (view) {
      var output = view.parentElement;
      if (rendered(output) || output.querySelector(".widget-fallback")) return;
      var note = document.createElement("p");
      note.className = "widget-fallback";
      note.textContent = NOTE;
      output.appendChild(note);
    });
  }

  function removeNotes() {
    document.querySelectorAll(".widget-fallback").forEach(function (note) {
      if (rendered(note.parentElement)) note.remove();
    });
  }

  // Runs before html-manager's own "load" handler (this script is earlier in the page),
  // and after the deferred MathJax has replaced the configuration object.
  document.addEventListener("DOMContentLoaded", addMathJaxHub);
  window.addEventListener("load", function () {
    addMathJaxHub();
    if (!document.querySelector(VIEW)) return;
    // Without require.js the widget manager cannot run at all: say so at once.
    if (typeof window.requirejs !== "function") { markUnrendered(); return; }
    // Otherwise give the manager time to render, and tidy up if it renders late.
    setTimeout(markUnrendered, 4000);
    setInterval(removeNotes, 2000);
  });
})();
