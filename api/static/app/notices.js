// What the page tells the person: a line in the activity, a notice that goes by itself, a banner that
// stays; and how a cell's value is quoted in them.
import { clock, el, fill } from '/static/shared/session.js';
import { quote } from './cells.js';

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** A value in quotes, or "(empty)" for none: `“”` in a sentence reads as a slip. @param {any} value */
export function quoted(value) {
  const text = quote(value);
  return text ? `“${text}”` : '(empty)';
}

/** @param {string} text @param {string} [colour] */
export function activity(text, colour) {
  const list = $('activity');
  list.prepend(el('li', { vars: colour ? { '--who': colour } : undefined }, el('span', { class: 'dot' }), el('time', {}, clock(new Date().toISOString())), el('span', {}, text)));
  while (list.children.length > 60) list.lastElementChild?.remove();
}

/** @param {string} text @param {'conflict' | 'info' | ''} [kind] */
export function toast(text, kind = '') {
  const box = el('div', { class: `toast ${kind}`, role: 'status' }, el('span', {}, text),
    el('button', { class: 'close', type: 'button', 'aria-label': 'Dismiss', onclick: () => box.remove() }, '×'));
  if (kind === 'conflict') box.classList.add('notice');
  const stack = $('toasts');
  stack.append(box);
  stack.scrollTop = stack.scrollHeight; // a stack taller than the window scrolls: the newest in view
  setTimeout(() => box.remove(), kind === 'conflict' ? 12000 : 6000);
}

/** @param {string} text @param {string} action @param {() => void} run */
export function banner(text, action, run) {
  const node = $('banner');
  fill(node, el('span', {}, text), el('button', { class: 'button small', type: 'button', onclick: run }, action));
  node.hidden = false;
}
