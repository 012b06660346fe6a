// Calendar days as ISO strings (YYYY-MM-DD) and the range presets.
// All arithmetic is in UTC, so the visitor's time zone never shifts a day.

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

// Presets end at the symbol's last stored day, not today: a symbol the fetch
// job has not updated lately still shows its most recent days.
export const PRESETS = {
  '2W': { days: 14 },
  '1M': { months: 1 },
  '3M': { months: 3 },
  '1Y': { months: 12 },
  All: {},
};
export const DEFAULT_PRESET = '3M';

function toDate(year, monthIndex, day) {
  const date = new Date(0);
  date.setUTCFullYear(year, monthIndex, day); // unlike Date.UTC, keeps years below 100
  return date;
}

function parts(iso) {
  return iso.split('-').map(Number);
}

function toIso(date) {
  return date.toISOString().slice(0, 10);
}

/** Tell whether `text` is a real calendar day written YYYY-MM-DD. */
export function isIsoDate(text) {
  const match = ISO_DATE.exec(text);
  if (!match) {
    return false;
  }
  const [year, month, day] = match.slice(1).map(Number);
  return year >= 1 && toIso(toDate(year, month - 1, day)) === text; // the API's first year is 1
}

/** Return the day `days` after `iso` (before it when negative). */
export function addDays(iso, days) {
  const [year, month, day] = parts(iso);
  return toIso(toDate(year, month - 1, day + days));
}

/** Return the same day `months` later, clamped to that month's length (03-31 - 1 month = 02-28). */
export function addMonths(iso, months) {
  const [year, month, day] = parts(iso);
  const monthLength = toDate(year, month - 1 + months + 1, 0).getUTCDate();
  return toIso(toDate(year, month - 1 + months, Math.min(day, monthLength)));
}

/**
 * Return {start, end} of the preset `name` for a symbol stored from `first` to `last`.
 *
 * 2W is the window the fetch job keeps (last - 14 days < day <= last); a
 * month-based preset covers whole months ending on `last`.
 */
export function presetRange(name, first, last) {
  const preset = PRESETS[name];
  if (preset.days) {
    return { start: addDays(last, 1 - preset.days), end: last };
  }
  if (preset.months) {
    return { start: addDays(addMonths(last, -preset.months), 1), end: last };
  }
  return { start: first, end: last };
}

/** Return the name of the preset that gives exactly `range`, or null. */
export function matchingPreset(range, first, last) {
  return Object.keys(PRESETS).find((name) => {
    const candidate = presetRange(name, first, last);
    return candidate.start === range.start && candidate.end === range.end;
  }) ?? null;
}
