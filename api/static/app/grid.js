// The grid on screen: cells, selection and range, moving about from the keyboard, in-cell editing and
// the formula bar, copy and paste; other people are drawn over it by markers.js. It knows nothing of
// the protocol: the app gives it values to show and gets callbacks for what the person does.
import { el } from '/static/shared/session.js';
import { LETTERS, cellName, display, parseCell, parseValue } from './cells.js';
import { clipboardText, parseClipboard } from './clipboard.js';
import { fitLines, isLineBreak, typeLineBreak } from './editors.js';
import { PeopleMarkers, place } from './markers.js';

/** The arrow keys, as a step of one cell. @type {Record<string, [number, number]>} */
const ARROWS = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] };

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
    /** Everyone else in the room, drawn over the cells. */
    this.markers = new PeopleMarkers(this);
    /** Cells may be looked at, not edited (a viewer's page, or a room the token no longer allows). */
    this._readOnly = false;
    /** Cells whose flash restarts at the end of the task (see `mark`). @type {[HTMLElement, string][]} */
    this._marking = [];
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

  get readOnly() {
    return this._readOnly;
  }

  /** The formula bar follows: typing there is editing too. @param {boolean} value */
  set readOnly(value) {
    this._readOnly = value;
    this.formula.readOnly = value;
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

  /**
   * Flashes a cell: 'flash' when someone else changed it, 'conflicted' when an edit of it was refused.
   * A cell flashing already starts again: its class comes off, and goes back on once the browser has
   * seen it off. The cells marked at once (a range: one message, one task) share that one look, at
   * the end of the task: one look per cell laid the whole grid out once per cell, which for a range
   * of a thousand held the page still for a second.
   * @param {string} id @param {string} kind 'flash' | 'conflicted'
   */
  mark(id, kind) {
    const td = this.td(id);
    if (!td) return;
    td.classList.remove(kind);
    if (!this._marking.length) queueMicrotask(() => this._restartMarks());
    this._marking.push([td, kind]);
  }

  /** Puts back the classes `mark` took off, after one layout that sees them off (see `mark`). */
  _restartMarks() {
    const marking = this._marking;
    this._marking = [];
    void this.table.offsetWidth;
    for (const [td, kind] of marking) td.classList.add(kind);
  }

  /** @param {string} id */
  rect(id) {
    const td = this.td(id);
    if (!td) return null;
    return { x: this.table.offsetLeft + td.offsetLeft, y: this.table.offsetTop + td.offsetTop, w: td.offsetWidth, h: td.offsetHeight };
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
    if (first && last) place(this.selectionBox, { x: first.x, y: first.y, w: last.x + last.w - first.x, h: last.y + last.h - first.y }, this.rect(cellName(0, 0)));
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
    // grid's bottom edge, and knows nothing of the headers over the cells: the grid scrolls itself,
    // to the cell (which the person may have scrolled away from before typing on it), then only as
    // far as shows the editor's lines (`_revealEditor`).
    this._scrollIntoView(id);
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
    this.scroller.addEventListener('scroll', () => this.markers.refit(), { passive: true });
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
        for (let c = c1; c <= c2; c += 1) row.push(this.lookup(cellName(c, r))?.value);
        rows.push(row);
      }
      e.clipboardData?.setData('text/plain', clipboardText(rows));
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
