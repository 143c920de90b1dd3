// The training run page's curve (templates/training_run.html).
//
// The page polls its status region every second and htmx swaps it whole. The figure
// is drawn outside that region, from the JSON the region carries
// (#training-curve-data), with Plotly.react: the first draw and every update go
// through the same call, so a polled page looks as a reloaded one does. (Drawing it
// with plotly's own inline script inside the swapped region broke it: htmx settles
// a swapped element's attributes after its scripts ran, which removed the class
// plotly's styles hang on, and the toolbar fell back to the site's button style.)
(function () {
  var CONFIG = { displaylogo: false, responsive: true };

  function draw() {
    var data = document.getElementById("training-curve-data");
    var chart = document.getElementById("training-curve");
    if (!data || !chart || !window.Plotly) return;
    var figure = JSON.parse(data.textContent);
    chart.closest("figure").hidden = false;
    window.Plotly.react(chart, figure.data, figure.layout, CONFIG);
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target.id === "training-status") draw();
  });
})();
