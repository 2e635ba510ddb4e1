// What the cell's editor and the formula bar share: sized to the lines of their text, and Alt+Enter
// (or Ctrl+Enter) typing a line break, as in spreadsheets.

/** The most lines an editor grows to show; a value with more scrolls in it. */
const EDITOR_LINES = 8;

/**
 * Sizes an editor (the cell's or the formula bar's) to its text: one line high for a value of one
 * line, as many lines as it holds up to EDITOR_LINES, past which it scrolls. app.css turns `--lines`
 * into the height. Closed (the formula bar while it only shows the selected cell) it is one line high,
 * scrolled back to the text's start.
 * @param {HTMLTextAreaElement} field @param {boolean} [open]
 */
export function fitLines(field, open = true) {
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
export const isLineBreak = (e) => e.key === 'Enter' && (e.altKey || e.ctrlKey || e.metaKey);

/**
 * Types a line break at the caret, over any selected text: through the browser's own editing where
 * it can, so that Ctrl+Z in the field takes it back as it does typing, and `input` fires as for a key.
 * @param {HTMLTextAreaElement} field
 */
export function typeLineBreak(field) {
  if (document.execCommand('insertText', false, '\n')) return;
  field.setRangeText('\n', field.selectionStart, field.selectionEnd, 'end');
  field.dispatchEvent(new Event('input', { bubbles: true }));
}
