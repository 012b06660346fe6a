// The dashboard: reads the view from the address, loads it from the API, draws it.
// main.js starts it.

import { ApiError, OfflineError, createApi } from './api.js';
import { PriceChart } from './chart.js';
import { DEFAULT_PRESET, isIsoDate, matchingPreset, presetRange } from './ranges.js';
import { UrlError, queryString, readUrlState } from './url-state.js';
import * as view from './view.js';

const { dataset } = view.elements.root;
const api = createApi(dataset.apiPrefix);
const symbolPattern = new RegExp(`^(?:${dataset.symbolPattern})$`);

let symbols = new Map(); // symbol -> its /api/symbols entry
let shown = null; // the view on screen: {symbol, start, end}
// Under the message of an address naming no stored symbol, the dates it asked for: {start?, end?}
let askedDates = null;
// The query of the address the page last showed, or refused with a message: only another one is
// another view (the skip link changes the fragment alone, and must not redo the address's message).
let shownAddress = null;
let chart = null;
let generation = 0; // bumped per load, so a slow answer never overwrites a newer view
let chosenPreset = null; // the preset last pressed: it wins over another giving the same days
let noSymbols = null; // with no symbol to pick, why: the arguments of view.showMessage

/**
 * Explain a failed request in a sentence a reader can act on, with Retry calling `retry`:
 * the arguments of view.showMessage. Over the rate limit, the message counts down the wait.
 */
function failure(error, retry) {
  if (error instanceof OfflineError) {
    return [`The API cannot be reached: ${error.message}. `
      + 'Check your connection and that the server is running, then retry.', retry];
  }
  if (error instanceof ApiError && error.status === 429 && error.retryAfter !== null) {
    // The API's own text points at its Retry-After header, which a reader never sees.
    return ['The API answered with an error (HTTP 429): too many requests.', retry,
      performance.now() + error.retryAfter * 1000];
  }
  if (error instanceof ApiError) {
    return [`The API answered with an error (HTTP ${error.status}): ${error.message}.`, retry];
  }
  throw error;
}

/** The preset that gives `range`: the one pressed last if it does (All and 2W can coincide). */
function presetOf(range) {
  const entry = symbols.get(range.symbol);
  if (!entry) {
    return null;
  }
  if (chosenPreset) {
    const chosen = presetRange(chosenPreset, entry.first_date, entry.last_date);
    if (chosen.start === range.start && chosen.end === range.end) {
      return chosenPreset;
    }
  }
  return matchingPreset(range, entry.first_date, entry.last_date);
}

/**
 * Complete what the address gave with the symbol's stored range (or the default preset).
 * A date filled in never falls on the wrong side of the given one: a range from after the
 * stored days (or to before them) stays a valid range, and shows that nothing is stored there.
 */
function completeView(wanted, entry) {
  if (!wanted.start && !wanted.end) {
    return { symbol: entry.symbol, ...presetRange(DEFAULT_PRESET, entry.first_date, entry.last_date) };
  }
  const start = wanted.start ?? (wanted.end < entry.first_date ? wanted.end : entry.first_date);
  const end = wanted.end ?? (start > entry.last_date ? start : entry.last_date);
  return { symbol: entry.symbol, start, end };
}

/** Load the stored symbols, then show the address's view; `again` on a retry. */
async function loadSymbols(again = false) {
  generation += 1;
  view.stopCountdown();
  view.setStatus('Loading the stored symbols…');
  view.setBusy(true); // no chart is on screen: the status line shows what loads
  const retry = () => loadSymbols(true);
  let entries;
  try {
    entries = await api.symbols(again); // a retry asks the API, not the browser's cached answer
  } catch (error) {
    view.renderPicker([], 'Symbols could not be loaded');
    showAddressDates();
    noSymbols = failure(error, retry);
    view.showMessage(...noSymbols);
    return;
  }
  symbols = new Map(entries.map((entry) => [entry.symbol, entry]));
  view.renderPicker(entries);
  if (entries.length === 0) {
    showAddressDates();
    noSymbols = ['No prices are stored yet. Run the fetch job (python get_raw_data.py) to load '
      + 'some, then retry.', retry];
    view.showMessage(...noSymbols);
    return;
  }
  noSymbols = null;
  await showAddress();
}

/**
 * With no symbol to show, put the dates of the address in the fields, as under an unknown
 * symbol's message: the page still says which days were asked for. A bad address leaves them.
 */
function showAddressDates() {
  try {
    const { start, end } = readUrlState(window.location.search, symbolPattern, dataset.symbolRule);
    view.renderControls({ start, end }, null);
  } catch (error) {
    if (!(error instanceof UrlError)) {
      throw error;
    }
  }
}

/** Show the view the address asks for; a bad address gets a message saying what is wrong. */
async function showAddress() {
  shownAddress = window.location.search;
  askedDates = null;
  let wanted;
  try {
    wanted = readUrlState(window.location.search, symbolPattern, dataset.symbolRule);
  } catch (error) {
    if (!(error instanceof UrlError)) {
      throw error;
    }
    generation += 1;
    shown = null;
    view.renderControls({}, null); // no symbol picked: picking any one shows it
    view.renderFreshness(null);
    view.showMessage(`This address cannot be shown: ${error.message}. Pick a symbol and a range instead.`);
    return;
  }
  const entry = symbols.get(wanted.symbol ?? symbols.keys().next().value);
  if (!entry) {
    generation += 1;
    shown = null;
    askedDates = { start: wanted.start, end: wanted.end };
    view.renderControls(askedDates, null);
    view.renderFreshness(null);
    view.showMessage(`No prices are stored for ${wanted.symbol}. Pick one of the stored symbols.`);
    return;
  }
  const complete = completeView(wanted, entry);
  if (window.location.search !== queryString(complete)) {
    window.history.replaceState(null, '', queryString(complete)); // the canonical, shareable form
    shownAddress = window.location.search;
  }
  await load(complete);
}

/** Load and draw a view: its prices, page by page, and its statistics. */
async function load(range) {
  generation += 1;
  view.stopCountdown(); // a wait counted for the previous view must not go on over this one
  const mine = generation;
  shown = range;
  const entry = symbols.get(range.symbol);
  view.renderControls(range, presetOf(range));
  view.renderFreshness(entry);
  if (range.start > range.end) {
    view.showMessage(noDataText(range, entry));
    return;
  }
  view.setBusy(true);
  view.setStatus(`Loading ${range.symbol}, ${range.start} to ${range.end}…`);
  try {
    const firstPage = await api.firstPricePage(range);
    if (mine !== generation) {
      return;
    }
    if (firstPage.pagination.count === 0) {
      view.showMessage(noDataText(range, entry));
      return;
    }
    const [rows, stats] = await Promise.all([api.allPrices(range, firstPage), api.statistics(range)]);
    if (mine !== generation) {
      return;
    }
    draw(range, rows, stats);
  } catch (error) {
    if (mine === generation) {
      // Retry shows the address's view: a message left on screen while another view
      // loads must not bring back the view it was about.
      view.showMessage(...failure(error, showAddress));
    }
  } finally {
    if (mine === generation) {
      view.setBusy(false);
    }
  }
}

function noDataText(range, entry) {
  const within = range.start >= entry.first_date && range.end <= entry.last_date;
  const advice = within
    ? ', but none of them falls in this range (a weekend or a holiday?): pick a wider one.'
    : ': pick a range within those days.';
  return `No prices are stored for ${range.symbol} from ${range.start} to ${range.end}. `
    + `${range.symbol} has prices from ${entry.first_date} to ${entry.last_date}${advice}`;
}

function draw(range, rows, stats) {
  view.showResults(range);
  chart ??= new PriceChart(view.elements.chart, view.renderReadout);
  chart.show(rows, range.symbol);
  view.renderStats(stats, rows.length);
  view.setStatus(`Showing ${range.symbol}, ${range.start} to ${range.end}: `
    + `${view.plural(rows.length, 'trading day')}.`);
}

/** Go to a view: a new history entry, so Back returns to the previous one (not the same one). */
function navigate(range) {
  if (window.location.search !== queryString(range)) {
    window.history.pushState(null, '', queryString(range));
  }
  shownAddress = window.location.search;
  load(range);
}

/** A range was asked for with no symbol picked: refuse it, or say why there is none to pick. */
function askForSymbol() {
  if (noSymbols) {
    view.showMessage(...noSymbols);
  } else {
    view.refuse('Pick a stored symbol first.', { symbol: ({ symbol }) => symbol === '' });
  }
}

function onSymbol(symbol) {
  const entry = symbols.get(symbol);
  if (!shown) { // under a message: the dates the address asked for, else the default preset
    navigate(completeView(askedDates ?? {}, entry));
    return;
  }
  // A preset follows the new symbol's stored days; explicit dates stay as they are.
  const preset = presetOf(shown);
  const range = preset
    ? presetRange(preset, entry.first_date, entry.last_date)
    : { start: shown.start, end: shown.end };
  navigate({ symbol, ...range });
}

function onPreset(name) {
  const entry = symbols.get(view.pickedSymbol());
  if (!entry) {
    askForSymbol();
    return;
  }
  chosenPreset = name;
  navigate({ symbol: entry.symbol, ...presetRange(name, entry.first_date, entry.last_date) });
}

// The date fields' faults, each a test of the controls' values: see view.refuse.
const notADay = (field) => (values) => !isIsoDate(values[field]);
// Reversed until both are days again, in order: a field being retyped is no day for a while.
const reversed = ({ start, end }) => !(isIsoDate(start) && isIsoDate(end) && start <= end);

function onDates(start, end) {
  const entry = symbols.get(view.pickedSymbol());
  const notDays = ['start', 'end'].filter((field) => !isIsoDate({ start, end }[field]));
  if (!entry) {
    askForSymbol();
  } else if (notDays.length > 0) {
    view.refuse('Write both dates as YYYY-MM-DD, from year 0001 to 9999.',
      Object.fromEntries(notDays.map((field) => [field, notADay(field)])));
  } else if (start > end) {
    view.refuse(`The start date ${start} is after the end date ${end}: swap them or pick a preset.`,
      { start: reversed, end: reversed });
  } else {
    chosenPreset = null;
    navigate({ symbol: entry.symbol, start, end });
  }
}

/** Bind the controls and Back and Forward, then show the address's view; settles once shown. */
export function start() {
  view.bindControls({ onSymbol, onPreset, onDates });
  window.addEventListener('popstate', () => {
    // Without stored symbols (none yet, or their loading failed) the page keeps its message
    // and Retry; a change of the fragment alone (the skip link) changes no view.
    if (symbols.size > 0 && window.location.search !== shownAddress) {
      showAddress();
    }
  });
  return loadSymbols();
}
