// Undo and redo of a person's own edits, as spreadsheets edited together do it: a step is one action
// of theirs (a cell typed, a range cleared or pasted) with each cell's value before and after it.
// Undoing a step writes the values before it back, as a new edit; a cell someone else changed since
// is left as they set it. Nothing here talks to the server: the app writes what `undo()` and `redo()`
// return, and says what they skipped.

/** @typedef {{cell_id: string, before: any, after: any}} CellChange */
/** @typedef {{cells: CellChange[]}} UndoStep */
/**
 * Whether a cell still holds what a step left in it: null when it does (the step may be undone or
 * redone there), else who changed it since (a user id; '' when unknown).
 * @typedef {(cellId: string, expected: any) => string | null} ChangedSince
 */
/**
 * What undoing or redoing a step does: `write` the cells to set, `skipped` those left as they are,
 * `cells` every cell of the step as it was (where it is shown).
 * @typedef {{step: UndoStep, cells: string[], write: {cell_id: string, value: any}[], skipped: {cell_id: string, by: string}[]}} UndoMove
 */

export class UndoHistory {
  /** @param {number} [limit] how many steps are kept: older ones are dropped */
  constructor(limit = 100) {
    this.limit = limit;
    /** Steps that can be undone, the newest last. @type {UndoStep[]} */
    this.done = [];
    /** Steps undone that can be redone, the newest undo last. @type {UndoStep[]} */
    this.undone = [];
  }

  get canUndo() {
    return this.done.length > 0;
  }

  get canRedo() {
    return this.undone.length > 0;
  }

  /**
   * A new edit of the person's: a step of its own. What was undone before it can no longer be
   * redone, as in any editor: its values were made on cells this edit may have changed.
   * @param {CellChange[]} cells
   */
  record(cells) {
    const step = { cells: cells.map(({ cell_id, before, after }) => ({ cell_id, before: before ?? null, after: after ?? null })) };
    this.done.push(step);
    if (this.done.length > this.limit) this.done.splice(0, this.done.length - this.limit);
    this.undone = [];
    return step;
  }

  /** Takes the newest step back: its cells get their values before it. @param {ChangedSince} changedSince */
  undo(changedSince) {
    return this._move(this.done, this.undone, 'before', 'after', changedSince);
  }

  /** Makes the newest undone step again: its cells get its values again. @param {ChangedSince} changedSince */
  redo(changedSince) {
    return this._move(this.undone, this.done, 'after', 'before', changedSince);
  }

  /**
   * An edit that was never applied (refused by the server, or made on a value it no longer has):
   * its step is no step, and undoing it would write values over changes it never made.
   * @param {UndoStep} step
   */
  forget(step) {
    this.done = this.done.filter((s) => s !== step);
    this.undone = this.undone.filter((s) => s !== step);
  }

  clear() {
    this.done = [];
    this.undone = [];
  }

  /**
   * @param {UndoStep[]} from @param {UndoStep[]} to
   * @param {'before' | 'after'} write @param {'before' | 'after'} expected
   * @param {ChangedSince} changedSince
   * @returns {UndoMove | null}
   */
  _move(from, to, write, expected, changedSince) {
    const step = from.pop();
    if (!step) return null;
    const cells = step.cells.map((c) => c.cell_id);
    const skipped = [];
    const kept = [];
    for (const change of step.cells) {
      const by = changedSince(change.cell_id, change[expected]);
      if (by === null) kept.push(change);
      else skipped.push({ cell_id: change.cell_id, by });
    }
    // A cell skipped now belongs to whoever changed it: redoing (or undoing again) leaves it alone too.
    step.cells = kept;
    if (kept.length) to.push(step);
    return { step, cells, write: kept.map((c) => ({ cell_id: c.cell_id, value: c[write] })), skipped };
  }
}
