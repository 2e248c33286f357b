// Live progress on the jobs page: queued and running jobs are polled until they finish.
"use strict";

(function () {
  const POLL_MS = 2000;
  function poll(row) {
    fetch("/jobs/" + encodeURIComponent(row.dataset.job), {credentials: "same-origin"})
      .then((res) => (res.ok ? res.json() : Promise.reject(new Error("HTTP " + res.status))))
      .then((job) => {
        const p = job.progress || {};
        const done = p.images_done || 0, all = p.images_total || 0;
        row.querySelector(".state").textContent = job.state;
        row.className = "job state-" + job.state;
        const bar = row.querySelector("progress");
        bar.max = all || 1; bar.value = done;
        row.querySelector(".count").textContent = done + " / " + (all || "?");
        if (p.model) row.querySelector(".model").textContent = p.model;
        if (job.state === "queued" || job.state === "running") setTimeout(() => poll(row), POLL_MS);
        else row.dataset.live = "0";
      })
      .catch(() => setTimeout(() => poll(row), POLL_MS * 5));
  }
  document.querySelectorAll("tr.job[data-live='1']").forEach((row) => setTimeout(() => poll(row), POLL_MS));
})();
