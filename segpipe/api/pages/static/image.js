// One image at full size: instances listed with class, score and area; hovering a row or the mask highlights it.
"use strict";

(function () {
  const root = document.getElementById("full");
  if (!root) return;
  const canvas = document.getElementById("canvas");
  const tbody = document.querySelector("#instances tbody");
  const colours = categoryColours();
  let item = null, highlight = null;

  function opts() {
    return Object.assign(readControls(), {colours, highlight, maxSide: Infinity});
  }

  function draw() {
    if (!item) return;
    drawOverlay(canvas, item.img, item.instances, opts());
    if (canvas.width < 640 && !canvas.style.width) {  // small images: enlarged by a whole factor, pixels kept sharp
      canvas.style.width = canvas.width * Math.floor(640 / canvas.width) + "px";
    }
    const o = opts();
    tbody.querySelectorAll("tr").forEach((tr) => {
      const inst = item.instances[Number(tr.dataset.index)];
      tr.classList.toggle("hidden", !isShown(inst, o));
      tr.classList.toggle("lit", inst.instance === highlight);
    });
  }

  function fillTable() {
    item.instances.forEach((inst, i) => {
      const tr = document.createElement("tr");
      tr.dataset.index = String(i);
      tr.dataset.instance = String(inst.instance);
      const c = colours[String(inst.category_id)];
      const cells = [
        String(inst.instance),
        (c ? c.name : inst.category_name) || String(inst.category_id),
        inst.score === null ? "" : inst.score.toFixed(3),
        inst.decoded ? String(inst.decoded.area) : "",
        inst.bbox ? inst.bbox.map((v) => Math.round(v)).join(", ") : "",
      ];
      cells.forEach((text, k) => {
        const td = document.createElement("td");
        if (k === 1 && c) {
          const sw = document.createElement("span");
          sw.className = "swatch"; sw.style.backgroundColor = c.hex;
          td.appendChild(sw);
        }
        td.appendChild(document.createTextNode(text));
        tr.appendChild(td);
      });
      tr.addEventListener("mouseenter", () => { highlight = inst.instance; draw(); });
      tr.addEventListener("mouseleave", () => { highlight = null; draw(); });
      tbody.appendChild(tr);
    });
  }

  canvas.addEventListener("mousemove", (ev) => {
    if (!item) return;
    const r = canvas.getBoundingClientRect();
    const x = Math.floor((ev.clientX - r.left) * canvas.width / r.width);
    const y = Math.floor((ev.clientY - r.top) * canvas.height / r.height);
    const o = opts();
    let found = null;
    for (let i = item.instances.length - 1; i >= 0; i--) {  // topmost (drawn last) first
      const inst = item.instances[i], d = inst.decoded;
      if (d && isShown(inst, o) && x >= 0 && y >= 0 && x < d.width && y < d.height && d.mask[y * d.width + x]) {
        found = inst.instance; break;
      }
    }
    if (found !== highlight) { highlight = found; draw(); }
  });
  canvas.addEventListener("mouseleave", () => { if (highlight !== null) { highlight = null; draw(); } });
  document.querySelectorAll(".controls input, .controls select").forEach((el) => el.addEventListener("input", draw));

  loadImageWithMasks(root.dataset.job, root.dataset.key).then((loadedItem) => {
    item = loadedItem;
    fillTable();
    draw();
  }).catch((err) => { root.dataset.error = String(err.message || err); root.prepend(document.createTextNode(root.dataset.error)); });
})();
