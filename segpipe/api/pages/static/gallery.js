// The gallery: loads each tile's image and masks when it scrolls into view, redraws on every control change.
"use strict";

(function () {
  const gallery = document.getElementById("gallery");
  if (!gallery) return;
  const job = gallery.dataset.job;
  const colours = categoryColours();
  const loaded = new Map(); // tile -> {img, instances}
  paintSwatches();

  function opts() {
    return Object.assign(readControls(), {colours, highlight: null, maxSide: 256});
  }

  function draw(tile) {
    const item = loaded.get(tile);
    if (!item) return;
    const shown = drawOverlay(tile.querySelector("canvas"), item.img, item.instances, opts());
    tile.querySelector(".count").textContent = shown + " of " + item.instances.length + " instances";
  }

  async function load(tile) {
    if (tile.dataset.state) return;
    tile.dataset.state = "loading";
    try {
      const item = await loadImageWithMasks(job, tile.dataset.key);
      loaded.set(tile, item);
      tile.dataset.state = "drawn";
      draw(tile);
    } catch (err) {
      tile.dataset.state = "error";
      tile.querySelector(".count").textContent = String(err.message || err);
    }
  }

  const seen = new IntersectionObserver((entries) => {
    entries.forEach((e) => { if (e.isIntersecting) { seen.unobserve(e.target); load(e.target); } });
  }, {rootMargin: "200px"});
  gallery.querySelectorAll(".tile").forEach((tile) => seen.observe(tile));

  function redrawAll() {
    loaded.forEach((_item, tile) => draw(tile));
    updateDownloads();
  }

  // "Filtered selection": the score threshold of the slider and, once a class is toggled off, the
  // original ids of the classes still on (an empty list when every class is off: nothing but the images).
  function updateDownloads() {
    const filtered = document.getElementById("filtered");
    const o = readControls();
    const shown = [];
    document.querySelectorAll(".class-box").forEach((box) => { if (box.checked) shown.push(box.dataset.category); });
    document.querySelectorAll("a.download").forEach((a) => {
      const url = new URL(a.dataset.base, window.location.origin);
      if (filtered && filtered.checked) {
        url.searchParams.set("score_threshold", String(o.minScore));
        if (o.hidden.size > 0) url.searchParams.set("categories", shown.join(","));
      }
      a.href = url.pathname + url.search;
    });
  }

  document.querySelectorAll("#controls input, #controls select, #filtered").forEach((el) => {
    el.addEventListener("input", redrawAll);
    el.addEventListener("change", redrawAll);
  });
  updateDownloads();
})();
