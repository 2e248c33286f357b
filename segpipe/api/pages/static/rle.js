// Decoding of COCO compressed RLE ({size: [h, w], counts: "..."}) into a row-major mask, in the browser.
// The counts string is pycocotools' format: run lengths alternating 0s and 1s over the image in
// column-major order, each written as 5-bit groups (+48) with a continuation bit, delta-coded from
// the run two before.
"use strict";

function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// -> {mask: Uint8Array(h*w) row-major, area, x0, y0, x1, y1} (box inclusive; empty mask: area 0)
function decodeRle(rle) {
  const h = rle.size[0], w = rle.size[1];
  const mask = new Uint8Array(h * w);
  const counts = typeof rle.counts === "string" ? rleCounts(rle.counts) : rle.counts;
  let i = 0, area = 0, x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let r = 0; r < counts.length; r++) {
    const n = counts[r];
    if (r % 2 === 1) {
      for (let j = i; j < i + n; j++) {
        const x = (j / h) | 0, y = j - x * h;
        mask[y * w + x] = 1;
        if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
      area += n;
    }
    i += n;
  }
  return {mask, area, width: w, height: h, x0, y0, x1, y1};
}
