// Live updates and instant filtering for the assetd dashboard. The page
// works without this file: the server renders everything, and the filter
// is a plain GET form.
"use strict";

(function () {
  const main = document.getElementById("live");
  if (!main) return;

  // Applies the filter form to the table rows without a round trip.
  function filterRows() {
    const q = document.getElementById("q");
    const phase = document.getElementById("phase");
    if (!q || !phase) return;
    const text = q.value.trim().toLowerCase();
    const wanted = phase.value;
    let shown = 0;
    const rows = main.querySelectorAll("table.fleet tbody tr[data-phase]");
    rows.forEach(function (row) {
      const keep = (!wanted || row.dataset.phase === wanted) &&
        (!text || row.textContent.toLowerCase().includes(text));
      row.hidden = !keep;
      if (keep) shown += 1;
    });
    const count = main.querySelector("#assets-h .count");
    if (count) count.textContent = "(" + shown + " of " + rows.length + ")";
  }

  // Fetches the changing part of this page again and swaps it in,
  // keeping the operator's filter (the form lives inside it).
  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    try {
      const focused = document.activeElement && document.activeElement.id;
      const q = document.getElementById("q");
      const phase = document.getElementById("phase");
      const keep = { q: q ? q.value : null, phase: phase ? phase.value : null };
      const url = new URL(window.location.href);
      url.searchParams.set("part", "main");
      const answer = await fetch(url, { cache: "no-store" });
      if (!answer.ok) return;
      main.innerHTML = await answer.text();
      const q2 = document.getElementById("q");
      const phase2 = document.getElementById("phase");
      if (q2 && keep.q !== null) q2.value = keep.q;
      if (phase2 && keep.phase !== null) phase2.value = keep.phase;
      if (focused) {
        const again = document.getElementById(focused);
        if (again) again.focus();
      }
      filterRows();
      document.body.dataset.updated = String(Date.now());
    } finally {
      pending = false;
    }
  }

  main.addEventListener("input", function (event) {
    if (event.target.id === "q" || event.target.id === "phase") filterRows();
  });

  if ("EventSource" in window) {
    const source = new EventSource("/ui/live");
    source.addEventListener("change", refresh);
    // After a reconnect, what was missed is fetched at once.
    source.addEventListener("open", refresh);
  }
})();
