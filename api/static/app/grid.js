// The grid on screen: cells, selection and range, in-cell editing, copy and paste, and the overlay
// that draws other people's selections and pointers. It knows nothing of the protocol: the app
// gives it values to show and gets callbacks for what the person does.
import { el } from '/static/shared/session.js';

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** The arrow keys, as a step of one cell. @type {Record<string, [number, number]>} */
const ARROWS = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] };

/** The most lines an editor grows to show; a value with more scrolls in it. */
const EDITOR_LINES = 8;

/** @param {number} col 0-based @param {number} row 0-based */
export const cellName = (col, row) => `${LETTERS[col]}${row + 1}`;

/** @param {string} id e.g. "B3" @returns {[number, number]} */
export function parseCell(id) {
  const match = /^([A-Z])(\d+)$/.exec(id);
  return match ? [LETTERS.indexOf(match[1]), Number(match[2]) - 1] : [0, 0];
}

/**
 * What a person typed, as a cell value: numbers as numbers, nothing as null. A number the server
 * cannot keep exactly (an integer past 2^53, such as a card or account number, one out of range, or
 * one too small to tell from zero) stays the text typed: as a number it would be refused, or kept
 * as another number.
 * @param {string} text
 */
export function parseValue(text) {
  const trimmed = text.trim();
  if (trimmed === '') return null;
  if (!/^-?(\d+\.?\d*|\.\d+)(e-?\d+)?$/i.test(trimmed)) return text;
  const number = Number(trimmed);
  if (!Number.isFinite(number) || (Number.isInteger(number) && !Number.isSafeInteger(number))) return text;
  // Too small to tell from zero (1e-400): zero is not what was typed.
  if (number === 0 && /[1-9]/.test(trimmed.split(/e/i)[0])) return text;
  return number;
}

/** @param {any} value */
export const display = (value) => (value === null || value === undefined ? '' : String(value));

/**
 * A value as one field of the clipboard's text, as Excel and Sheets write it: a value holding a tab,
 * a line break or a double quote is quoted, with its quotes doubled, so that it reads back as one
 * cell; any other is written as shown.
 * @param {any} value @returns {string}
 */
export function clipboardField(value) {
  const text = display(value);
  return /[\t\n\r"]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * The rows of fields in text from the clipboard, as spreadsheets put it there: fields split by tabs,
 * rows by line breaks (one at the very end closes the last row, it opens no empty one). A field that
 * starts with a double quote and is closed by one just before a tab, a line break or the end is a
 * quoted field: its doubled quotes are one quote, and its tabs and line breaks are part of the
 * value. Any other field, one with a quote that closes nothing included (`5" screen`, `"hi" there`),
 * is taken as it reads.
 * @param {string} text @returns {string[][]}
 */
export function parseClipboard(text) {
  const source = text.replace(/\r\n?/g, '\n');
  /** @type {string[][]} */
  const rows = [];
  /** @type {string[]} */
  let row = [];
  let at = 0;
  for (;;) {
    const quoted = source[at] === '"' ? quotedField(source, at) : null;
    const end = quoted ? quoted.end : fieldEnd(source, at);
    row.push(quoted ? quoted.value : source.slice(at, end));
    if (end === source.length) break;
    at = end + 1;
    if (source[end] === '\n') {
      rows.push(row);
      row = [];
      if (at === source.length) return rows;
    }
  }
  rows.push(row);
  return rows;
}

/** Where the unquoted field starting at `at` ends: at the next tab or line break, else the end. @param {string} source @param {number} at */
function fieldEnd(source, at) {
  let end = at;
  while (end < source.length && source[end] !== '\t' && source[end] !== '\n') end += 1;
  return end;
}

/**
 * The quoted field whose opening quote is at `start`, and where it ends (just after its closing
 * quote); null when no quote closes it there, and the field is text as it reads.
 * @param {string} source @param {number} start @returns {{value: string, end: number} | null}
 */
function quotedField(source, start) {
  let value = '';
  let at = start + 1;
  for (;;) {
    const quote = source.indexOf('"', at);
    if (quote < 0) return null;
    value += source.slice(at, quote);
    if (source[quote + 1] === '"') {
      value += '"';
      at = quote + 2;
      continue;
    }
    const end = quote + 1;
    return end === source.length || source[end] === '\t' || source[end] === '\n' ? { value, end } : null;
  }
}

/**
 * Sizes an editor (the cell's or the formula bar's) to its text: one line high for a value of one
 * line, as many lines as it holds up to EDITOR_LINES, past which it scrolls. app.css turns `--lines`
 * into the height. Closed (the formula bar while it only shows the selected cell) it is one line high,
 * scrolled back to the text's start.
 * @param {HTMLTextAreaElement} field @param {boolean} [open]
 */
function fitLines(field, open = true) {
  const lines = open ? field.value.split('\n').length : 1;
  field.style.setProperty('--lines', String(Math.min(lines, EDITOR_LINES)));
  field.classList.toggle('grown', lines > 1);
  field.classList.toggle('scrolls', lines > EDITOR_LINES);
  if (!open) field.scrollTop = field.scrollLeft = 0;
}

/**
 * Whether Enter in an editor is to start a new line, as in spreadsheets: with Alt, or with Ctrl (Cmd
 * on a Mac) as Google Sheets allows too. Plain Enter, or with Shift, saves.
 * @param {KeyboardEvent} e
 */
const isLineBreak = (e) => e.key === 'Enter' && (e.altKey || e.ctrlKey || e.metaKey);

/**
 * Types a line break at the caret, over any selected text: through the browser's own editing where
 * it can, so that Ctrl+Z in the field takes it back as it does typing, and `input` fires as for a key.
 * @param {HTMLTextAreaElement} field
 */
function typeLineBreak(field) {
  if (document.execCommand('insertText', false, '\n')) return;
  field.setRangeText('\n', field.selectionStart, field.selectionEnd, 'end');
  field.dispatchEvent(new Event('input', { bubbles: true }));
}

export class SheetGrid {
  /**
   * @param {{table: HTMLTableElement, scroller: HTMLElement, overlay: HTMLElement, formula: HTMLTextAreaElement,
   *   cellName: HTMLElement, cols?: number, rows?: number, colour: string}} parts
   */
  constructor(parts) {
    Object.assign(this, parts);
    this.cols = parts.cols ?? 26;
    this.rows = parts.rows ?? 60;
    this.anchor = [0, 0];
    this.focus = [0, 0];
    /**
     * The column a run of Tabs started in, while it goes on: Enter from an editor goes to the next row
     * there, as in spreadsheets, so that a table is typed row by row. Any other move ends the run.
     * @type {number | null}
     */
    this.tabStart = null;
    /**
     * The open in-cell editor; `shown` is the text it opened with (null when opened by a typed key).
     * @type {{cell: HTMLTableCellElement, input: HTMLTextAreaElement, id: string, shown: string | null} | null}
     */
    this.editing = null;
    /** The formula bar's cell and text when it took the focus. @type {{id: string, text: string} | null} */
    this.formulaShown = null;
    /** @type {Map<string, {selection: HTMLElement, pointer: HTMLElement}>} */
    this.remotes = new Map();
    this.readOnly = false;
    // Callbacks the app sets.
    this.onCommit = (/** @type {string} */ _id, /** @type {any} */ _value) => {};
    /** A range written as one edit: pasted, or `cleared` with Delete. */
    this.onRange = (/** @type {{cell_id: string, value: any}[]} */ _cells, /** @type {boolean} */ _cleared = false) => {};
    this.onSelect = (/** @type {string} */ _id) => {};
    /** An editor (in the cell or the formula bar) opened on a cell: what it shows is what an edit is typed over. */
    this.onEditOpen = (/** @type {string} */ _id) => {};
    /** Typing in a cell's editor: when it opens in the cell, and on each change in either editor. */
    this.onEditStart = (/** @type {string} */ _id) => {};
    this.onEditEnd = (/** @type {string} */ _id) => {};
    this.onPointer = (/** @type {number} */ _x, /** @type {number} */ _y) => {};
    this.lookup = (/** @type {string} */ _id) => /** @type {any} */ (undefined);
    this._build();
    this._bind();
    this.selectionBox = el('div', { class: 'selection-box', vars: { '--who': parts.colour } });
    this.overlay.append(this.selectionBox);
    this._select([0, 0], false);
  }

  _build() {
    const head = el('tr', {}, el('th', { class: 'corner' }));
    for (let c = 0; c < this.cols; c += 1) head.append(el('th', { dataset: { col: c } }, LETTERS[c]));
    const body = el('tbody');
    for (let r = 0; r < this.rows; r += 1) {
      const row = el('tr', {}, el('th', { dataset: { row: r } }, r + 1));
      for (let c = 0; c < this.cols; c += 1) row.append(el('td', { dataset: { cell: cellName(c, r) } }));
      body.append(row);
    }
    this.table.replaceChildren(el('thead', {}, head), body);
  }

  /** @param {string} id */
  td(id) {
    return /** @type {HTMLTableCellElement | null} */ (this.table.querySelector(`td[data-cell="${id}"]`));
  }

  get selected() {
    return cellName(...this.focus);
  }

  /** The selected range's corners, top-left first. */
  get range() {
    const [c1, r1] = this.anchor;
    const [c2, r2] = this.focus;
    return [Math.min(c1, c2), Math.min(r1, r2), Math.max(c1, c2), Math.max(r1, r2)];
  }

  /** Selects the range from one cell to another (one cell when `to` is not given). @param {string} from @param {string} [to] */
  selectRange(from, to = from) {
    this._select(parseCell(from), false);
    this._select(parseCell(to), true);
  }

  /** Shows a cell's value. @param {string} id @param {{value: any, pending?: boolean} | undefined} cell */
  render(id, cell) {
    const td = this.td(id);
    if (!td || this.editing?.id === id) return;
    const value = cell?.value;
    td.textContent = display(value);
    td.classList.toggle('num', typeof value === 'number');
    td.classList.toggle('pending', Boolean(cell?.pending));
    if (id === this.selected) this._showFormula();
  }

  /** @param {string} id @param {string} kind 'flash' | 'conflicted' */
  mark(id, kind) {
    const td = this.td(id);
    if (!td) return;
    td.classList.remove(kind);
    void td.offsetWidth; // restart the animation
    td.classList.add(kind);
  }

  /** @param {string} id */
  rect(id) {
    const td = this.td(id);
    if (!td) return null;
    return { x: this.table.offsetLeft + td.offsetLeft, y: this.table.offsetTop + td.offsetTop, w: td.offsetWidth, h: td.offsetHeight };
  }

  /**
   * Draws another person's selection and pointer in their colour.
   * @param {string} userId @param {{name: string, colour: string, cell?: string | null, x?: number, y?: number, typing?: boolean}} who
   */
  setRemote(userId, who) {
    let remote = this.remotes.get(userId);
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
      this.remotes.set(userId, remote);
      this.overlay.append(selection, pointer);
    }
    // A person already drawn may have been renamed since (a newer tab joined under another name).
    for (const label of [remote.selection.querySelector('.tag'), remote.pointer.querySelector('.name')]) {
      if (label && who.name && label.textContent !== who.name) label.textContent = who.name;
    }
    for (const node of [remote.selection, remote.pointer]) node.style.setProperty('--who', who.colour);
    if (who.cell !== undefined) {
      const box = who.cell ? this.rect(who.cell) : null;
      remote.selection.hidden = !box;
      if (box) {
        remote.selection.dataset.cell = who.cell;
        this._place(remote.selection, box);
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
   * selection: a pointer over their cell at A1, whose tag is below the cell where the pointer's name
   * goes too, or just above their cell elsewhere. The tag names them there already, in their colour
   * beside the pointer, and two names drawn over each other read as neither. Worked out from where
   * the pointer is going, not where its movement's transition has it now.
   * @param {{selection: HTMLElement, pointer: HTMLElement}} remote
   */
  _namePointer({ selection, pointer }) {
    const label = /** @type {HTMLElement | null} */ (pointer.querySelector('.name'));
    const tag = selection.querySelector('.tag');
    let over = false;
    if (label && tag && !pointer.hidden && !selection.hidden) {
      const origin = this.overlay.getBoundingClientRect();
      const t = tag.getBoundingClientRect();
      const left = parseFloat(pointer.style.getPropertyValue('--x')) + label.offsetLeft + origin.left;
      const top = parseFloat(pointer.style.getPropertyValue('--y')) + label.offsetTop + origin.top;
      const gap = 2;
      over = left - gap < t.right && t.left < left + label.offsetWidth + gap
        && top - gap < t.bottom && t.top < top + label.offsetHeight + gap;
    }
    pointer.classList.toggle('beside-tag', over);
  }

  /** Whether a point of the overlay is over the cells, not the headers. @param {number} x @param {number} y */
  _overCells(x, y) {
    const origin = this.rect(cellName(0, 0));
    return !origin || (x >= origin.x && y >= origin.y);
  }

  /** @param {string} userId */
  removeRemote(userId) {
    const remote = this.remotes.get(userId);
    if (!remote) return;
    remote.selection.remove();
    remote.pointer.remove();
    this.remotes.delete(userId);
  }

  /**
   * Places a selection's box over the gridlines around its cells, though never under the row and
   * column headers, which are drawn above the overlay (to cover the cells scrolled under them): in
   * column A and row 1 the box starts at the cells' own edge, so its border shows whole. `--room` is
   * how far left of the box the cells begin: as far as a name tag may reach before the row headers.
   * @param {HTMLElement} node @param {{x: number, y: number, w: number, h: number}} box
   */
  /**
   * Keeps a person's name tag clear of the headers, which are drawn above the overlay: above their
   * cell unless that is under the column headers (row 1, or the grid scrolled so the cell is in the
   * top visible row), then below it; and its lane starting at the first cell not under the row
   * headers. Redone as the grid scrolls.
   * @param {HTMLElement} selection
   */
  _fitTag(selection) {
    const box = selection.dataset.cell ? this.rect(selection.dataset.cell) : null;
    const origin = this.rect(cellName(0, 0));
    const tag = /** @type {HTMLElement | null} */ (selection.querySelector('.tag'));
    if (!box || !origin || !tag) return;
    const top = origin.y + this.scroller.scrollTop; // where the visible cells begin
    selection.classList.toggle('tag-below', box.y - tag.offsetHeight < top);
    const left = origin.x + this.scroller.scrollLeft;
    selection.style.setProperty('--room', `${Math.max(box.x - 1, origin.x) - left}px`);
  }

  _place(node, box) {
    const origin = this.rect(cellName(0, 0)) ?? box;
    const x = Math.max(box.x - 1, origin.x);
    const y = Math.max(box.y - 1, origin.y);
    node.style.setProperty('--room', `${x - origin.x}px`);
    node.style.setProperty('--x', `${x}px`);
    node.style.setProperty('--y', `${y}px`);
    node.style.setProperty('--w', `${box.x + box.w - x}px`);
    node.style.setProperty('--h', `${box.y + box.h - y}px`);
  }

  /**
   * @param {[number, number]} at @param {boolean} extend
   * @param {number | null} [tabStart] the run of Tabs this move carries on (see `_tab`); any other ends it
   */
  _select(at, extend, tabStart = null) {
    const [c, r] = [Math.max(0, Math.min(this.cols - 1, at[0])), Math.max(0, Math.min(this.rows - 1, at[1]))];
    const moved = c !== this.focus[0] || r !== this.focus[1];
    this.focus = [c, r];
    this.tabStart = tabStart;
    if (!extend) this.anchor = [c, r];
    const [c1, r1, c2, r2] = this.range;
    for (const td of this.table.querySelectorAll('td.in-range')) td.classList.remove('in-range');
    for (const th of this.table.querySelectorAll('th.active')) th.classList.remove('active');
    const first = this.rect(cellName(c1, r1));
    const last = this.rect(cellName(c2, r2));
    if (first && last) this._place(this.selectionBox, { x: first.x, y: first.y, w: last.x + last.w - first.x, h: last.y + last.h - first.y });
    if (c1 !== c2 || r1 !== r2) {
      for (let rr = r1; rr <= r2; rr += 1) for (let cc = c1; cc <= c2; cc += 1) this.td(cellName(cc, rr))?.classList.add('in-range');
    }
    this.table.querySelector(`thead th[data-col="${c}"]`)?.classList.add('active');
    this.table.querySelector(`tbody th[data-row="${r}"]`)?.classList.add('active');
    this.cellName.textContent = this.selected;
    this._showFormula();
    this._scrollIntoView(this.selected);
    if (moved || !extend) this.onSelect(this.selected);
  }

  /** @param {string} id */
  _scrollIntoView(id) {
    const box = this.rect(id);
    if (!box) return;
    const s = this.scroller;
    const head = 26;
    const side = 46;
    if (box.y - head < s.scrollTop) s.scrollTop = box.y - head;
    else if (box.y + box.h > s.scrollTop + s.clientHeight) s.scrollTop = box.y + box.h - s.clientHeight;
    if (box.x - side < s.scrollLeft) s.scrollLeft = box.x - side;
    else if (box.x + box.w > s.scrollLeft + s.clientWidth) s.scrollLeft = box.x + box.w - s.clientWidth;
  }

  _showFormula() {
    if (document.activeElement === this.formula) return;
    const cell = this.lookup(this.selected);
    this.formula.value = display(cell?.value);
    fitLines(this.formula, false);
  }

  /**
   * Ends the formula bar's edit of the cell it was opened on, which is not the cell selected when a
   * click on another cell took the focus (the click selects it before the bar loses the focus).
   * With `save`, the text typed is that cell's new value, unless the bar was left as it opened (as
   * `commitEdit`: no edit of the person's, though the cell changed meanwhile).
   * @param {boolean} save
   */
  _endFormula(save) {
    const shown = this.formulaShown;
    this.formulaShown = null;
    if (!shown) return;
    this.onEditEnd(shown.id);
    if (!save || this.readOnly) return;
    const text = this.formula.value;
    const value = parseValue(text);
    if (text !== shown.text && value !== (this.lookup(shown.id)?.value ?? null)) this.onCommit(shown.id, value);
  }

  /**
   * Whether an open editor, in the cell or in the formula bar, holds text the person typed and has
   * not saved yet: closing the page now would lose it.
   */
  hasUnsavedText() {
    if (this.editing && this.editing.input.value !== this.editing.shown) return true;
    return !!this.formulaShown && this.formula.value !== this.formulaShown.text;
  }

  /** @param {string} [initial] text to start with (a typed key), else the cell's value */
  startEdit(initial) {
    if (this.readOnly || this.editing) return;
    const id = this.selected;
    const td = this.td(id);
    if (!td) return;
    // A field of several lines, one line high for a value of one: a value's line breaks are shown
    // and kept. It has the cell's width; a line longer than that scrolls sideways, as in a field of
    // one line, rather than wrapping. The cell lets it grow over the cells below (app.css).
    // Framed in the person's colour, as their selection is (whose colour the app keeps current): it
    // is drawn over the selection's frame.
    const who = this.selectionBox.style.getPropertyValue('--who');
    const attrs = { class: 'editor', rows: 1, wrap: 'off', spellcheck: 'false', autocomplete: 'off', vars: { '--who': who } };
    const input = /** @type {HTMLTextAreaElement} */ (el('textarea', attrs));
    input.value = initial ?? display(this.lookup(id)?.value);
    td.classList.add('editing');
    td.append(input);
    fitLines(input);
    // What it holds as opened, read back: a value's "\r\n" reads as "\n" in a textarea.
    this.editing = { cell: td, input, id, shown: initial === undefined ? input.value : null };
    // The browser's own scroll to a focused field would jump to centre an editor grown past the
    // grid's bottom edge: the grid scrolls only as far as shows it (`_revealEditor`).
    input.focus({ preventScroll: true });
    input.setSelectionRange(input.value.length, input.value.length);
    this._revealEditor();
    input.addEventListener('keydown', (e) => this._editorKey(e));
    input.addEventListener('blur', () => {
      // The window lost the focus (another window or tab in front): the editor keeps its focus in
      // the page, and its text, and the edit stays open for when the person comes back.
      if (document.activeElement === input) return;
      // Left by a click elsewhere or anything else that takes the focus: saved as Enter saves it.
      if (this.editing?.input === input) this.commitEdit();
    });
    input.addEventListener('input', () => {
      fitLines(input);
      this._revealEditor();
      this.onEditStart(id);
    });
    this.onEditOpen(id);
    this.onEditStart(id);
  }

  /**
   * Scrolls the grid down as little as shows the whole of the open editor, grown over the cells
   * below its own, though never so far that its cell goes under the column headers.
   */
  _revealEditor() {
    const editing = this.editing;
    const box = editing && this.rect(editing.id);
    if (!editing || !box) return;
    const s = this.scroller;
    const head = 26;
    const bottom = box.y - 1 + editing.input.offsetHeight; // it starts a pixel above its cell (app.css)
    const below = bottom - (s.scrollTop + s.clientHeight);
    if (below > 0) s.scrollTop = Math.min(s.scrollTop + below, box.y - head);
  }

  commitEdit() {
    const editing = this.editing;
    if (!editing) return;
    this.editing = null;
    const value = parseValue(editing.input.value);
    editing.input.remove();
    editing.cell.classList.remove('editing');
    this.onEditEnd(editing.id);
    // An editor left as it opened is no edit, though the cell changed meanwhile (someone else's
    // value, never shown in the editor): writing it back would undo their change, or conflict.
    const before = this.lookup(editing.id)?.value ?? null;
    if (editing.input.value !== editing.shown && value !== before) this.onCommit(editing.id, value);
    this.render(editing.id, this.lookup(editing.id));
  }

  cancelEdit() {
    const editing = this.editing;
    if (!editing) return;
    this.editing = null;
    editing.input.remove();
    editing.cell.classList.remove('editing');
    this.onEditEnd(editing.id);
    this.render(editing.id, this.lookup(editing.id));
    this.scroller.focus();
  }

  /**
   * Tab and Shift+Tab, from the grid or an editor: right and left. Tab starts a run, or carries one
   * on; Shift+Tab steps back within a run, keeping where it started, but starts none.
   * @param {boolean} back
   */
  _tab(back) {
    const start = this.tabStart ?? (back ? null : this.focus[0]);
    this._select([this.focus[0] + (back ? -1 : 1), this.focus[1]], false, start);
  }

  /**
   * Enter from an editor, with Shift up: the next row down, in the column a run of Tabs started in
   * if there is one (typing a table, the row after the one just typed starts under its first cell).
   * @param {boolean} up
   */
  _enter(up) {
    this._select([this.tabStart ?? this.focus[0], this.focus[1] + (up ? -1 : 1)], false);
  }

  /** @param {KeyboardEvent} e */
  _editorKey(e) {
    if (isLineBreak(e)) {
      e.preventDefault();
      typeLineBreak(/** @type {HTMLTextAreaElement} */ (e.target));
    } else if (e.key === 'Enter' || e.key === 'Tab') {
      e.preventDefault();
      this.commitEdit();
      if (e.key === 'Enter') this._enter(e.shiftKey);
      else this._tab(e.shiftKey);
      this.scroller.focus();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      this.cancelEdit();
    }
  }

  /** @param {KeyboardEvent} e */
  _gridKey(e) {
    if (this.editing || e.target !== this.scroller) return;
    const jump = this._jump(e.key, e.ctrlKey || e.metaKey);
    if (e.key === 'Enter' || e.key === 'F2') {
      e.preventDefault();
      this.startEdit();
    } else if (e.key === 'Tab') {
      e.preventDefault();
      this._tab(e.shiftKey);
    } else if (jump) {
      // Before the arrows: Ctrl+Arrow is a jump. The browser's own (scrolling the grid) is prevented
      // as a plain arrow's is, so the grid scrolls only as `_select` scrolls it, to show the cell.
      e.preventDefault();
      this._select(jump, e.shiftKey);
    } else if (e.key in ARROWS) {
      e.preventDefault();
      const [dc, dr] = ARROWS[e.key];
      this._select([this.focus[0] + dc, this.focus[1] + dr], e.shiftKey);
    } else if ((e.key === 'Delete' || e.key === 'Backspace') && !this.readOnly) {
      e.preventDefault();
      const cells = this._rangeCells().filter((id) => this.lookup(id)?.value != null);
      if (cells.length === 1) this.onCommit(cells[0], null);
      else if (cells.length > 1) this.onRange(cells.map((cell_id) => ({ cell_id, value: null })), true);
    } else if (e.key.length === 1 && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      this.startEdit(e.key);
    }
  }

  /**
   * Where Home, End and the page keys go, as in spreadsheets: Home to column A, End to the row's last
   * cell holding a value, with Ctrl (or Cmd) to A1 and to the last row and column holding values;
   * Page Up and Page Down a screenful of rows; Ctrl+Arrow to the edge of the data (see `_edge`).
   * Null for any other key.
   * @param {string} key @param {boolean} ctrl @returns {[number, number] | null}
   */
  _jump(key, ctrl) {
    const [c, r] = this.focus;
    if (ctrl && key in ARROWS) return this._edge(ARROWS[key]);
    if (key === 'Home') return ctrl ? [0, 0] : [0, r];
    if (key === 'PageUp') return [c, r - this.pageRows()];
    if (key === 'PageDown') return [c, r + this.pageRows()];
    if (key !== 'End') return null;
    let [lastCol, lastRow] = [0, 0];
    for (let rr = 0; rr < this.rows; rr += 1) {
      if (!ctrl && rr !== r) continue;
      for (let cc = 0; cc < this.cols; cc += 1) {
        if (this.lookup(cellName(cc, rr))?.value == null) continue;
        lastCol = Math.max(lastCol, cc);
        lastRow = rr;
      }
    }
    return ctrl ? [lastCol, lastRow] : [lastCol, r];
  }

  /**
   * Where Ctrl+Arrow goes from the selected cell, as in spreadsheets: from a cell holding a value
   * whose neighbour that way holds one too, to the last of that block before an empty cell;
   * otherwise over the empty cells to the next cell holding a value. The sheet's edge when either
   * runs out first.
   * @param {[number, number]} step one cell in the arrow's direction @returns {[number, number]}
   */
  _edge([dc, dr]) {
    const inside = (/** @type {number} */ c, /** @type {number} */ r) =>
      c >= 0 && c < this.cols && r >= 0 && r < this.rows;
    const filled = (/** @type {number} */ c, /** @type {number} */ r) =>
      inside(c, r) && this.lookup(cellName(c, r))?.value != null;
    let [c, r] = this.focus;
    // Decided once, from where the jump starts: along a block of values, or across a gap.
    const along = filled(c, r) && filled(c + dc, r + dr);
    while (inside(c + dc, r + dr)) {
      if (along && !filled(c + dc, r + dr)) break; // the block's last value
      c += dc;
      r += dr;
      if (!along && filled(c, r)) break; // the first value past the gap
    }
    return [c, r];
  }

  /** How many rows a screenful is: what Page Up and Page Down move by. */
  pageRows() {
    const row = this.rect(cellName(0, 0))?.h || 26;
    return Math.max(1, Math.floor((this.scroller.clientHeight - row) / row));
  }

  _rangeCells() {
    const [c1, r1, c2, r2] = this.range;
    const ids = [];
    for (let r = r1; r <= r2; r += 1) for (let c = c1; c <= c2; c += 1) ids.push(cellName(c, r));
    return ids;
  }

  /**
   * Tab-separated rows, as spreadsheets put on the clipboard (see `parseClipboard`), written from the
   * selection's top-left. A block smaller than the selection that fits it a whole number of times
   * down and across fills it, repeated, as spreadsheets do (one value fills every selected cell);
   * any other is written once, as far as the sheet goes. Either is one edit.
   * @param {string} text
   */
  _paste(text) {
    const block = parseClipboard(text);
    const height = block.length;
    const width = block.reduce((widest, row) => Math.max(widest, row.length), 0);
    const [c1, r1, c2, r2] = this.range;
    const [across, down] = [c2 - c1 + 1, r2 - r1 + 1];
    const fits = width <= across && height <= down && across % width === 0 && down % height === 0;
    const tiled = fits && (width < across || height < down);
    const [w, h] = tiled ? [across, down] : [Math.min(width, this.cols - c1), Math.min(height, this.rows - r1)];
    const cells = [];
    let [lastCol, lastRow] = [c1, r1];
    for (let dr = 0; dr < h; dr += 1) {
      for (let dc = 0; dc < w; dc += 1) {
        const field = block[dr % height][dc % width];
        if (field === undefined) continue; // a row shorter than the block's widest leaves the rest as it is
        cells.push({ cell_id: cellName(c1 + dc, r1 + dr), value: parseValue(field) });
        [lastCol, lastRow] = [Math.max(lastCol, c1 + dc), Math.max(lastRow, r1 + dr)];
      }
    }
    if (!cells.length) return;
    this.anchor = [c1, r1];
    this._select([lastCol, lastRow], true);
    if (cells.length === 1) this.onCommit(cells[0].cell_id, cells[0].value);
    else this.onRange(cells);
  }

  _bind() {
    let dragging = false;
    this.table.addEventListener('mousedown', (e) => {
      const td = /** @type {HTMLElement} */ (e.target).closest('td');
      if (!td || td.querySelector('.editor')) return;
      e.preventDefault();
      if (this.editing) this.commitEdit();
      this._select(parseCell(td.dataset.cell ?? 'A1'), e.shiftKey);
      dragging = true;
      this.scroller.focus();
    });
    this.table.addEventListener('mouseover', (e) => {
      const td = /** @type {HTMLElement} */ (e.target).closest('td');
      if (dragging && td) this._select(parseCell(td.dataset.cell ?? 'A1'), true);
    });
    window.addEventListener('mouseup', () => {
      dragging = false;
    });
    this.table.addEventListener('dblclick', (e) => {
      if (/** @type {HTMLElement} */ (e.target).closest('td')) this.startEdit();
    });
    this.scroller.addEventListener('keydown', (e) => this._gridKey(e));
    this.scroller.addEventListener('scroll', () => {
      for (const { selection } of this.remotes.values()) if (!selection.hidden) this._fitTag(selection);
    }, { passive: true });
    this.scroller.addEventListener('mousemove', (e) => {
      const box = this.scroller.getBoundingClientRect();
      this.onPointer(e.clientX - box.left + this.scroller.scrollLeft, e.clientY - box.top + this.scroller.scrollTop);
    });
    document.addEventListener('paste', (e) => {
      if (this.readOnly || this.editing || document.activeElement !== this.scroller) return;
      e.preventDefault();
      // A clipboard without text (an image, a file) is nothing to paste, not an empty value: taken as
      // one, it would clear the whole selection.
      if (!e.clipboardData?.types.includes('text/plain')) return;
      this._paste(e.clipboardData.getData('text/plain'));
    });
    document.addEventListener('copy', (e) => {
      if (this.editing || document.activeElement !== this.scroller) return;
      e.preventDefault();
      const [c1, r1, c2, r2] = this.range;
      const rows = [];
      for (let r = r1; r <= r2; r += 1) {
        const row = [];
        for (let c = c1; c <= c2; c += 1) row.push(clipboardField(this.lookup(cellName(c, r))?.value));
        rows.push(row.join('\t'));
      }
      e.clipboardData?.setData('text/plain', rows.join('\n'));
    });
    this.formula.addEventListener('focus', () => {
      fitLines(this.formula); // grown over the grid to show every line, while it has the focus
      if (this.formulaShown) return; // the window's focus back on an edit still open (see the blur)
      this.formulaShown = { id: this.selected, text: this.formula.value };
      if (!this.readOnly) this.onEditOpen(this.selected);
    });
    // A focus alone, to look or to copy, is no typing: it starts with the first change, and each
    // change keeps it alive (the app refreshes it before the server's expiry), as in the cell.
    this.formula.addEventListener('input', () => {
      fitLines(this.formula);
      if (this.formulaShown && !this.readOnly) this.onEditStart(this.formulaShown.id);
    });
    this.formula.addEventListener('keydown', (e) => {
      if (isLineBreak(e)) {
        e.preventDefault();
        typeLineBreak(this.formula);
      } else if (e.key === 'Enter') {
        e.preventDefault(); // the field's own Enter would start a new line; read-only, it does nothing
        if (this.readOnly) return;
        this._endFormula(true);
        this.scroller.focus();
        this._enter(false);
      } else if (e.key === 'Escape') {
        e.preventDefault();
        this._endFormula(false); // the blur that follows has nothing left to save
        this.scroller.focus();
      }
    });
    this.formula.addEventListener('blur', () => {
      // The window lost the focus (another window or tab in front): the bar keeps its focus in the
      // page, and its text, and the edit stays open for when the person comes back.
      if (document.activeElement === this.formula) return;
      // Left by a click on another cell, Tab, or anything else that takes the focus: what was typed
      // is saved as Enter saves it, as spreadsheets do; only Escape discards.
      this._endFormula(true);
      this._showFormula();
    });
  }
}
