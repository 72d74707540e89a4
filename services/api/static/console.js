// foodseg console: live refresh of the overview, per-item toggles on the result overlay,
// confirmation of destructive forms. Plain JavaScript, no build step.
"use strict";

function refreshEvery(el) {
  const seconds = Number(el.dataset.refresh) || 5;
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const res = await fetch(window.location.href, { credentials: "same-origin" });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const fresh = doc.getElementById(el.id);
      if (fresh) el.replaceChildren(...fresh.childNodes);
    } catch (_) {
      // Offline for a moment: the next tick tries again.
    }
  }, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh][id]").forEach(refreshEvery);

  document.querySelectorAll("input[data-toggle]").forEach((box) => {
    box.addEventListener("change", () => {
      const item = document.querySelector(`#overlay g[data-item="${box.dataset.toggle}"]`);
      if (item) item.classList.toggle("hidden", !box.checked);
    });
  });

  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
