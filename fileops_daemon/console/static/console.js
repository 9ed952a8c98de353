// fileops console: the only script. It never builds markup from data: a plan's page reloads
// when its state changes; the results table inserts rows the server rendered (and escaped).
"use strict";
(function () {
  const POLL_MS = 1500;

  const watch = document.getElementById("watch");
  if (watch) {
    const url = watch.dataset.stateUrl;
    const shown = watch.dataset.stateKey;
    const tick = async () => {
      try {
        const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (response.ok) {
          const body = await response.json();
          if (body.key !== shown) {
            const here = new URL(window.location.href);
            here.searchParams.delete("notice");
            here.searchParams.delete("sig");
            window.location.replace(here.toString());
            return;
          }
        }
      } catch (_) { /* the next tick tries again */ }
      window.setTimeout(tick, POLL_MS);
    };
    window.setTimeout(tick, POLL_MS);
  }

  const check = document.querySelector("[data-check-url]");
  if (check) {
    (async () => {
      try {
        const response = await fetch(check.dataset.checkUrl,
          { credentials: "same-origin", cache: "no-store" });
        const template = document.createElement("template");
        template.innerHTML = response.ok  // rendered and escaped by the server's templates
          ? (await response.text()).trim()
          : '<p class="check unknown" id="check" role="alert"></p>';
        const shown = template.content.firstElementChild;
        if (!response.ok) { shown.textContent = "The tree could not be checked: open the page again."; }
        check.replaceWith(shown);
        const approve = document.getElementById("approve");
        if (approve && shown.dataset.same === "1") {
          approve.disabled = false;
          approve.removeAttribute("aria-disabled");
        }
      } catch (_) { /* Approve stays disabled; the page can be opened again */ }
    })();
  }

  const table = document.getElementById("results");
  if (table) {
    const body = table.querySelector("tbody");
    let last = table.dataset.last;
    const tick = async () => {
      try {
        const response = await fetch(table.dataset.rowsUrl + "&after=" + encodeURIComponent(last),
          { credentials: "same-origin", cache: "no-store" });
        if (response.ok) {
          const html = (await response.text()).trim();
          last = response.headers.get("x-last-seq") || last;
          if (html) {
            const template = document.createElement("template");
            template.innerHTML = html;  // rendered and escaped by the server's templates
            body.prepend(template.content);
          }
        }
      } catch (_) { /* the next tick tries again */ }
      window.setTimeout(tick, POLL_MS);
    };
    window.setTimeout(tick, POLL_MS);
  }
})();
