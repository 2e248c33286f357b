// Draws an image with its instances' masks on a canvas: filled (translucent) or outlines, with a
// class filter, a score threshold and one highlighted instance. Shared by the gallery and image pages.
"use strict";

function categoryColours() {
  const colours = {};
  document.querySelectorAll("#categories span").forEach((el) => {
    colours[el.dataset.category] = {name: el.dataset.name, rgb: hexRgb(el.dataset.colour), hex: el.dataset.colour};
  });
  return colours;
}

function hexRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function keyPath(key) {
  return key.split("/").map(encodeURIComponent).join("/");
}

// Fetch one image of a job and its stored masks -> {img, doc, instances: [{...row, decoded}]}
async function loadImageWithMasks(job, key) {
  const img = new Image();
  const loaded = new Promise((ok, fail) => { img.onload = ok; img.onerror = () => fail(new Error("image " + key)); });
  img.src = "/jobs/" + encodeURIComponent(job) + "/images/" + keyPath(key) + "/file";
  const res = await fetch("/images/" + keyPath(key) + "/masks?job=" + encodeURIComponent(job), {credentials: "same-origin"});
  if (!res.ok) throw new Error("masks of " + key + ": HTTP " + res.status);
  const doc = await res.json();
  await loaded;
  const instances = doc.instances.map((row) => Object.assign({}, row, {decoded: row.rle ? decodeRle(row.rle) : null}));
  return {img, doc, instances};
}

function isShown(inst, opts) {
  if (opts.hidden.has(String(inst.category_id))) return false;
  return inst.score === null || inst.score === undefined || inst.score >= opts.minScore;
}

// opts: {hidden: Set of category ids (str), minScore, mode: "fill"|"outline", highlight: instance no or null,
//        colours, maxSide: longest canvas side (downscales big images in tiles)}
function drawOverlay(canvas, img, instances, opts) {
  const w = img.naturalWidth, h = img.naturalHeight;
  const scale = Math.min(1, (opts.maxSide || Infinity) / Math.max(w, h));
  const cw = Math.max(1, Math.round(w * scale)), ch = Math.max(1, Math.round(h * scale));
  canvas.width = cw; canvas.height = ch;
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  ctx.drawImage(img, 0, 0, cw, ch);
  const frame = ctx.getImageData(0, 0, cw, ch);
  const px = frame.data;
  let shown = 0;
  // the highlighted instance last, so its outline is not painted over by the masks drawn after it
  const ordered = instances.filter((inst) => inst.instance !== opts.highlight)
    .concat(instances.filter((inst) => inst.instance === opts.highlight));
  for (const inst of ordered) {
    const d = inst.decoded;
    if (!d || !isShown(inst, opts)) continue;
    shown++;
    if (d.area === 0) continue;
    const colour = (opts.colours[String(inst.category_id)] || {rgb: [255, 255, 0]}).rgb;
    const lit = opts.highlight === inst.instance;
    const alpha = lit ? 0.75 : 0.5;
    const tx0 = Math.floor(d.x0 * scale), tx1 = Math.min(cw - 1, Math.floor(d.x1 * scale));
    const ty0 = Math.floor(d.y0 * scale), ty1 = Math.min(ch - 1, Math.floor(d.y1 * scale));
    const at = (tx, ty) => {
      if (tx < 0 || ty < 0 || tx >= cw || ty >= ch) return 0;
      const sx = Math.min(w - 1, Math.floor(tx / scale)), sy = Math.min(h - 1, Math.floor(ty / scale));
      return d.mask[sy * w + sx];
    };
    for (let ty = ty0; ty <= ty1; ty++) {
      for (let tx = tx0; tx <= tx1; tx++) {
        if (!at(tx, ty)) continue;
        const edge = !at(tx - 1, ty) || !at(tx + 1, ty) || !at(tx, ty - 1) || !at(tx, ty + 1);
        if (opts.mode === "outline" && !edge && !lit) continue;
        const o = (ty * cw + tx) * 4;
        const rgb = lit && edge ? [255, 255, 255] : colour;
        const a = opts.mode === "outline" || (lit && edge) ? 1 : alpha;
        px[o] = Math.round(px[o] * (1 - a) + rgb[0] * a);
        px[o + 1] = Math.round(px[o + 1] * (1 - a) + rgb[1] * a);
        px[o + 2] = Math.round(px[o + 2] * (1 - a) + rgb[2] * a);
      }
    }
  }
  ctx.putImageData(frame, 0, 0);
  canvas.dataset.shown = String(shown);
  canvas.dataset.drawn = "1";
  return shown;
}

// The class checkboxes, score slider and mode select of a page -> opts (without colours/highlight)
function readControls() {
  const hidden = new Set();
  document.querySelectorAll(".class-box").forEach((box) => { if (!box.checked) hidden.add(box.dataset.category); });
  const score = document.getElementById("score");
  const mode = document.getElementById("mode");
  const out = document.getElementById("score-value");
  if (out) out.textContent = Number(score.value).toFixed(2);
  return {hidden, minScore: Number(score.value), mode: mode.value};
}

function paintSwatches() {
  document.querySelectorAll(".swatch").forEach((el) => { el.style.backgroundColor = el.dataset.colour; });
}
