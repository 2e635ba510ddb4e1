// Other people on the grid: each one's selected cell, framed in their colour with their name on a
// tag, and their pointer. Drawn in the grid's overlay, kept clear of its headers.
import { el } from '/static/shared/session.js';
import { cellName } from './cells.js';

/** @typedef {{x: number, y: number, w: number, h: number}} Box */
/** @typedef {{name: string, colour: string, cell?: string | null, x?: number, y?: number, typing?: boolean}} Person */

/**
 * Places a selection's box over the gridlines around its cells, though never under the row and
 * column headers, which are drawn above the overlay (to cover the cells scrolled under them): in
 * column A and row 1 the box starts at the cells' own edge, so its border shows whole. `--room` is
 * how far left of the box the cells begin: as far as a name tag may reach before the row headers.
 * @param {HTMLElement} node @param {Box} box @param {Box | null} [origin] where cell A1 is
 */
export function place(node, box, origin) {
  origin ??= box;
  const x = Math.max(box.x - 1, origin.x);
  const y = Math.max(box.y - 1, origin.y);
  node.style.setProperty('--room', `${x - origin.x}px`);
  node.style.setProperty('--x', `${x}px`);
  node.style.setProperty('--y', `${y}px`);
  node.style.setProperty('--w', `${box.x + box.w - x}px`);
  node.style.setProperty('--h', `${box.y + box.h - y}px`);
}

export class PeopleMarkers {
  /** @param {{rect: (id: string) => Box | null, overlay: HTMLElement, scroller: HTMLElement}} grid */
  constructor(grid) {
    this.grid = grid;
    /** @type {Map<string, {selection: HTMLElement, pointer: HTMLElement}>} */
    this.all = new Map();
  }

  /**
   * Draws another person's selection and pointer in their colour.
   * @param {string} userId @param {Person} who
   */
  set(userId, who) {
    let remote = this.all.get(userId);
    if (!remote) {
      // The tag sits in a lane from the cells' left edge to the frame's right edge (see app.css).
      const lane = el('span', { class: 'tag-lane' }, el('span', { class: 'tag' }, who.name));
      const selection = el('div', { class: 'remote-selection', dataset: { user: userId } }, lane);
      const pointer = el(
        'div',
        { class: 'remote-pointer', dataset: { user: userId } },
        el('svg', { viewBox: '0 0 16 16', width: 16, height: 16, 'aria-hidden': 'true' },
          el('path', { svg: true, d: 'M1 1 L1 13 L4.5 9.5 L7 15 L9 14 L6.6 8.6 L11.5 8.6 Z', fill: 'currentColor', stroke: '#fff', 'stroke-width': 1 })),
        el('span', { class: 'name' }, who.name),
      );
      remote = { selection, pointer };
      this.all.set(userId, remote);
      this.grid.overlay.append(selection, pointer);
    }
    // A person already drawn may have been renamed since (a newer tab joined under another name).
    for (const label of [remote.selection.querySelector('.tag'), remote.pointer.querySelector('.name')]) {
      if (label && who.name && label.textContent !== who.name) label.textContent = who.name;
    }
    for (const node of [remote.selection, remote.pointer]) node.style.setProperty('--who', who.colour);
    if (who.cell !== undefined) {
      const box = who.cell ? this.grid.rect(who.cell) : null;
      remote.selection.hidden = !box;
      if (box) {
        remote.selection.dataset.cell = who.cell;
        place(remote.selection, box, this.grid.rect(cellName(0, 0)));
        this._fitTag(remote.selection);
      }
    }
    if (typeof who.x === 'number' && typeof who.y === 'number') {
      remote.pointer.style.setProperty('--x', `${who.x}px`);
      remote.pointer.style.setProperty('--y', `${who.y}px`);
    } else if (who.x === undefined && !remote.pointer.style.getPropertyValue('--x')) {
      remote.pointer.hidden = true;
    }
    // Over the headers (or at 0,0, where a page that has not seen its person's mouse puts it) a
    // pointer would be drawn under them, but for its name sticking out below: it is not drawn.
    if (typeof who.x === 'number') remote.pointer.hidden = !this._overCells(who.x, who.y ?? 0);
    if (who.typing !== undefined) remote.selection.classList.toggle('typing', who.typing);
    this._namePointer(remote);
  }

  /**
   * A pointer's name goes beside it, unless it would lie over the name tag of the same person's
   * selection: a pointer over their cell in the top visible row, whose tag is below the cell where
   * the pointer's name goes too, or just above their cell elsewhere. The tag names them there
   * already, in their colour beside the pointer, and two names drawn over each other read as neither.
   * Worked out from where the pointer is going, not where its movement's transition has it now, and
   * again as the grid scrolls (`refit`).
   * @param {{selection: HTMLElement, pointer: HTMLElement}} remote
   */
  _namePointer({ selection, pointer }) {
    const label = /** @type {HTMLElement | null} */ (pointer.querySelector('.name'));
    const tag = selection.querySelector('.tag');
    let over = false;
    if (label && tag && !pointer.hidden && !selection.hidden) {
      const origin = this.grid.overlay.getBoundingClientRect();
      const t = tag.getBoundingClientRect();
      const left = parseFloat(pointer.style.getPropertyValue('--x')) + label.offsetLeft + origin.left;
      const top = parseFloat(pointer.style.getPropertyValue('--y')) + label.offsetTop + origin.top;
      const gap = 2;
      over = left - gap < t.right && t.left < left + label.offsetWidth + gap
        && top - gap < t.bottom && t.top < top + label.offsetHeight + gap;
    }
    pointer.classList.toggle('beside-tag', over);
  }

  /**
   * Whether a point of the overlay is over the cells in view, not under the headers, which cover the
   * cells scrolled under them. @param {number} x @param {number} y
   */
  _overCells(x, y) {
    const origin = this.grid.rect(cellName(0, 0));
    const { scrollLeft, scrollTop } = this.grid.scroller;
    return !origin || (x >= origin.x + scrollLeft && y >= origin.y + scrollTop);
  }

  /** @param {string} userId */
  remove(userId) {
    const remote = this.all.get(userId);
    if (!remote) return;
    remote.selection.remove();
    remote.pointer.remove();
    this.all.delete(userId);
  }

  /**
   * Keeps a person's name tag clear of the headers, which are drawn above the overlay: above their
   * cell unless that is under the column headers (row 1, or the grid scrolled so the cell is in the
   * top visible row), then below it; and its lane starting at the first cell not under the row
   * headers. Redone as the grid scrolls.
   * @param {HTMLElement} selection
   */
  _fitTag(selection) {
    const box = selection.dataset.cell ? this.grid.rect(selection.dataset.cell) : null;
    const origin = this.grid.rect(cellName(0, 0));
    const tag = /** @type {HTMLElement | null} */ (selection.querySelector('.tag'));
    if (!box || !origin || !tag) return;
    const top = origin.y + this.grid.scroller.scrollTop; // where the visible cells begin
    selection.classList.toggle('tag-below', box.y - tag.offsetHeight < top);
    const left = origin.x + this.grid.scroller.scrollLeft;
    selection.style.setProperty('--room', `${Math.max(box.x - 1, origin.x) - left}px`);
  }

  /**
   * Fits every shown tag and pointer again, the grid scrolled: a tag moved below its cell or back may
   * now lie where its person's pointer has its name, or no longer, so that name is placed again too.
   */
  refit() {
    for (const remote of this.all.values()) {
      // A pointer the scroll took under the headers is not drawn, one it brought out is again.
      const x = parseFloat(remote.pointer.style.getPropertyValue('--x'));
      const y = parseFloat(remote.pointer.style.getPropertyValue('--y'));
      if (!Number.isNaN(x) && !Number.isNaN(y)) remote.pointer.hidden = !this._overCells(x, y);
      if (!remote.selection.hidden) this._fitTag(remote.selection);
      this._namePointer(remote);
    }
  }
}
