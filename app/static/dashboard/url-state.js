// The view lives in the address (?symbol=IBM&start_date=...&end_date=...), so it can be shared and reloaded.

import { isIsoDate } from './ranges.js';

/** A query string the page cannot show; the message names the parameter. */
export class UrlError extends Error {}

const DATE_PARAMETERS = [['start_date', 'start'], ['end_date', 'end']];
// A value of the address quoted in a message is cut to this many characters, as the API
// cuts what it quotes (QUOTED_INPUT_MAX): a link cannot write its own text into the page.
const QUOTED_MAX = 40;

/**
 * Return `text` in quotes, cut to QUOTED_MAX characters. Counted as Python counts them, by code
 * point: a string's length and slice count UTF-16 units, and would cut an emoji in two.
 */
function quoted(text) {
  const characters = Array.from(text);
  const shown = characters.length <= QUOTED_MAX
    ? text : `${characters.slice(0, QUOTED_MAX - 3).join('')}...`;
  return `“${shown}”`;
}

/**
 * Read {symbol?, start?, end?} from `search`; throw UrlError on a bad value.
 *
 * `symbolPattern` is the API's ticker rule and `symbolRule` says it in words.
 * Other parameters are ignored, as links often carry some. One of the view's given
 * twice is refused, as the API refuses it: the page would otherwise show one of the
 * two without a word.
 */
export function readUrlState(search, symbolPattern, symbolRule) {
  const params = new URLSearchParams(search);
  for (const name of ['symbol', 'start_date', 'end_date']) {
    if (params.getAll(name).length > 1) {
      throw new UrlError(`${name} is given more than once`);
    }
  }
  const state = {};
  if (params.has('symbol')) {
    const symbol = params.get('symbol').trim().toUpperCase();
    if (!symbolPattern.test(symbol)) {
      throw new UrlError(`symbol must be ${symbolRule}, not ${quoted(params.get('symbol'))}`);
    }
    state.symbol = symbol;
  }
  for (const [name, key] of DATE_PARAMETERS) {
    if (params.has(name)) {
      const value = params.get(name).trim();
      if (!isIsoDate(value)) {
        throw new UrlError(`${name} must be a date written YYYY-MM-DD, not ${quoted(params.get(name))}`);
      }
      state[key] = value;
    }
  }
  if (state.start && state.end && state.start > state.end) {
    throw new UrlError(`start_date ${state.start} is after end_date ${state.end}`);
  }
  return state;
}

/** Return the query string of a view: symbol, start_date, end_date. */
export function queryString({ symbol, start, end }) {
  return `?${new URLSearchParams({ symbol, start_date: start, end_date: end })}`;
}
