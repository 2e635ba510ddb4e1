// Cells by name and what they hold: a cell's name from its column and row and back, a value as a
// person typed it, and a value as shown.

export const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

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
 * A value as a sentence quotes it (a notice, the activity, the console's timeline): its first 60
 * characters, ending in "…" when cut. A cell holds up to 32,767 characters, and the whole of a long
 * one would bury the rest of the text; the cell, the formula bar and a cell's history show it all.
 * @param {any} value
 */
export function quote(value) {
  const text = display(value);
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}
