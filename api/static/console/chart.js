// A small area chart in SVG (the console's messages per second): no charting library for one line.
const NS = 'http://www.w3.org/2000/svg';

/** @param {string} tag @param {Record<string, string | number>} attrs */
function svg(tag, attrs) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

/**
 * Draws `values` (oldest first) into `root` (an <svg> with viewBox 0 0 600 160), room for `points`.
 * @param {SVGSVGElement} root @param {number[]} values @param {number} points
 */
export function renderChart(root, values, points) {
  const [width, height, top] = [600, 160, 12];
  const peak = Math.max(1, ...values) * 1.15;
  // Spread the first points over a dozen slots, so a fresh chart is not one sliver at the right edge.
  const span = Math.min(points, Math.max(values.length, 12));
  const x = (/** @type {number} */ i) => (width * (span - values.length + i)) / (span - 1);
  const y = (/** @type {number} */ v) => top + (height - top) * (1 - v / peak);
  const gradient = svg('linearGradient', { id: 'rate-fill', x1: 0, y1: 0, x2: 0, y2: 1 });
  gradient.append(svg('stop', { offset: '0%', 'stop-color': '#4f46e5', 'stop-opacity': 0.28 }), svg('stop', { offset: '100%', 'stop-color': '#4f46e5', 'stop-opacity': 0.02 }));
  const defs = svg('defs', {});
  defs.append(gradient);
  const children = [defs];
  for (const fraction of [0.25, 0.5, 0.75]) {
    const level = y(peak * fraction);
    children.push(svg('line', { class: 'grid-line', x1: 0, x2: width, y1: level, y2: level }));
  }
  if (values.length > 1) {
    const line = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    children.push(svg('polygon', { class: 'area', points: `${x(0)},${height} ${line} ${x(values.length - 1)},${height}` }));
    children.push(svg('polyline', { class: 'line', points: line }));
  }
  root.replaceChildren(...children);
  root.dataset.points = String(values.length);
}
