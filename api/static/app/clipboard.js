// The clipboard's text as spreadsheets write and read it: rows of tab-separated fields, a field
// holding a tab, a line break or a quote quoted.
import { display } from './cells.js';

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
 * Values as the clipboard's text: each row's fields (see `clipboardField`) joined by tabs, the rows by
 * line breaks. A last row that reads as nothing (one empty cell: a column ending in empty cells) ends
 * in a line break of its own, as Excel ends every row: without it, the line break before it would
 * read as closing the row above (see `parseClipboard`), and that row would be lost in a paste.
 * @param {any[][]} rows @returns {string}
 */
export function clipboardText(rows) {
  const lines = rows.map((row) => row.map(clipboardField).join('\t'));
  return lines.join('\n') + (lines[lines.length - 1] === '' ? '\n' : '');
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
