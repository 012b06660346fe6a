// What the page shows: the picker, the range controls, messages, the statistics and the readout.

const byId = (id) => document.getElementById(id);

export const elements = {
  skipLink: byId('skip-link'),
  root: byId('dashboard'),
  form: byId('controls'),
  symbol: byId('symbol'),
  start: byId('start_date'),
  end: byId('end_date'),
  presets: [...document.querySelectorAll('[data-preset]')],
  refusal: byId('refusal'),
  freshness: byId('freshness'),
  message: byId('message'),
  messageText: byId('message-text'),
  retry: byId('retry'),
  status: byId('status'),
  results: byId('results'),
  chart: byId('chart'),
  chartTitle: byId('chart-title'),
  readout: byId('readout'),
  stats: byId('stats'),
};

const PAGE_TITLE = document.title;
let retryAction = null;
let standingFaults = new Map(); // each refused field's name -> is it still at fault? (see refuse)
let countdown = null; // the one count of a message's wait before a retry: its nodes and timer

/** Write an integer string with thousands separators, exactly (no float on the way). */
export function groupDigits(text) {
  return String(text).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Write `count` and `word`, with an s unless the count is 1: "1 trading day", "2 trading days". */
export function plural(count, word) {
  return `${groupDigits(count)} ${word}${count === 1 ? '' : 's'}`;
}

function lag(entry) {
  return entry.sessions_behind === 0
    ? 'up to date'
    : `${plural(entry.sessions_behind, 'session')} behind`;
}

// The closed picker shows the picked option whole: each option reads the longest of its
// forms that fits the widest the picker can be (the line below the controls says the rest).
function optionForms(entry) {
  const stale = entry.stale ? ' · stale' : '';
  return [
    `${entry.symbol} · last day ${entry.last_date}${stale}`,
    `${entry.symbol} · ${entry.last_date}${stale}`,
    `${entry.symbol}${stale}`,
    entry.symbol,
  ];
}

let pickerEntries = []; // the picker's /api/symbols entries, in the order of its options
const textWidth = document.createElement('canvas').getContext('2d');

/** Give each option the longest form that fits; again whenever the controls' width changes. */
function fitOptions() {
  const room = elements.form.clientWidth; // the picker's widest (it is at most its row)
  if (!room || pickerEntries.length === 0) {
    return;
  }
  const style = getComputedStyle(elements.symbol);
  textWidth.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const probe = Object.assign(document.createElement('select'), { className: 'picker-probe' });
  document.body.append(probe);
  const frame = probe.offsetWidth; // an empty picker: its border, padding and arrow
  probe.remove();
  const fits = (text) => frame + Math.ceil(textWidth.measureText(text).width) <= room;
  pickerEntries.forEach((entry, index) => {
    const forms = optionForms(entry);
    elements.symbol.options[index].text = forms.find(fits) ?? forms.at(-1);
  });
}

new ResizeObserver(fitOptions).observe(elements.form);

// How the freshness line words the API's last_fetch_status: the run's outcome for the symbol.
const FETCH_OUTCOMES = { ok: 'ok', failed: 'failed', not_fetched: 'skipped (the run ended first)' };

export function lastFetch(entry) {
  if (!entry.last_fetched_at) {
    return 'Not fetched by the job yet.';
  }
  const when = entry.last_fetched_at.replace('T', ' ').slice(0, 16);
  const outcome = FETCH_OUTCOMES[entry.last_fetch_status] ?? entry.last_fetch_status;
  return `Last fetch: ${outcome}, ${when} UTC.`;
}

/** Call the handlers on the user's choices: a symbol, a preset, two dates, a retry. */
export function bindControls({ onSymbol, onPreset, onDates }) {
  elements.symbol.addEventListener('change', () => onSymbol(elements.symbol.value));
  for (const button of elements.presets) {
    button.addEventListener('click', () => onPreset(button.dataset.preset));
  }
  elements.form.addEventListener('submit', (event) => {
    event.preventDefault();
    onDates(elements.start.value, elements.end.value);
  });
  elements.form.addEventListener('input', recheckFaults);
  elements.form.addEventListener('change', recheckFaults);
  elements.retry.addEventListener('click', () => retryAction?.());
}

/** Fill the picker with every stored symbol and its freshness; `emptyText` when there is none. */
export function renderPicker(entries, emptyText = 'No symbols stored') {
  pickerEntries = entries;
  const options = entries.map((entry) => new Option(optionForms(entry)[0], entry.symbol));
  elements.symbol.replaceChildren(...(options.length ? options : [new Option(emptyText, '')]));
  elements.symbol.disabled = entries.length === 0;
  fitOptions();
}

/** Say how fresh `entry` (an /api/symbols entry) is; a stale one is marked. */
export function renderFreshness(entry) {
  if (!entry) {
    elements.freshness.replaceChildren();
    return;
  }
  const badge = document.createElement('strong');
  badge.className = entry.stale ? 'badge badge-stale' : 'badge badge-fresh';
  badge.textContent = entry.stale ? 'Stale' : 'Fresh';
  elements.freshness.replaceChildren(
    badge,
    ` ${entry.symbol}: ${plural(entry.trading_days, 'trading day')} stored, `,
    unbroken(entry.first_date),
    ' to ',
    unbroken(entry.last_date),
    ...withUnbrokenDates(`, ${lag(entry)}. ${lastFetch(entry)}`),
  );
}

/** `text` as nodes, each date in it (YYYY-MM-DD) one that a narrow screen never breaks. */
function withUnbrokenDates(text) {
  return text.split(/(\d{4}-\d{2}-\d{2})/).map((part, index) => (index % 2 ? unbroken(part) : part));
}

/** A date that a narrow screen never breaks at its hyphens. */
function unbroken(text) {
  const span = document.createElement('span');
  span.className = 'unbroken';
  span.textContent = text;
  return span;
}

/** Show `view` ({symbol, start, end}) in the controls; `preset` is pressed, no refusal stands. */
export function renderControls(view, preset) {
  elements.symbol.value = view.symbol ?? '';
  elements.start.value = view.start ?? '';
  elements.end.value = view.end ?? '';
  for (const button of elements.presets) {
    button.setAttribute('aria-pressed', String(button.dataset.preset === preset));
  }
  refuse('');
}

/**
 * Say under the controls why what they ask for is refused. `faults` maps each field at fault
 * ('symbol', 'start', 'end'), marked invalid, to a test of the controls' values ({symbol,
 * start, end}) telling whether that field still is at fault: an edit that corrects a field
 * takes its mark away, and the sentence with the last mark. The view, the address and the
 * pressed preset stay as they were: the page never shows a range it did not apply. The focus
 * stays where the user is. An empty `text` takes the refusal away.
 */
export function refuse(text, faults = {}) {
  standingFaults = new Map(Object.entries(faults));
  // Emptied, not only hidden: the fields' description reads a hidden element's text too.
  elements.refusal.replaceChildren(...withUnbrokenDates(text));
  elements.refusal.hidden = text === '';
  markFaults();
}

function markFaults() {
  for (const name of ['symbol', 'start', 'end']) {
    if (standingFaults.has(name)) {
      elements[name].setAttribute('aria-invalid', 'true');
    } else {
      elements[name].removeAttribute('aria-invalid');
    }
  }
}

/** After an edit of the controls, take the refusal away from the fields no longer at fault. */
function recheckFaults() {
  if (standingFaults.size === 0) {
    return;
  }
  const { symbol, start, end } = elements;
  const values = { symbol: symbol.value, start: start.value, end: end.value };
  for (const [name, isAtFault] of standingFaults) {
    if (!isAtFault(values)) {
      standingFaults.delete(name);
    }
  }
  if (standingFaults.size === 0) {
    refuse('');
  } else {
    markFaults();
  }
}

/** Return the symbol the picker shows. */
export function pickedSymbol() {
  return elements.symbol.value;
}

/**
 * Show a message instead of the results; `retry` adds a Retry button that calls it.
 * With `retryAt` (a performance.now() time), the message ends counting down the seconds
 * to it, then says that a retry can go now; it never retries by itself.
 */
export function showMessage(text, retry = null, retryAt = null) {
  const focused = document.activeElement;
  stopCountdown();
  retryAction = retry;
  elements.messageText.replaceChildren(...withUnbrokenDates(text));
  if (retryAt !== null) {
    countDown(retryAt);
  }
  elements.retry.hidden = retry === null;
  elements.message.hidden = false;
  elements.results.hidden = true;
  // The Retry button or the chart, now hidden, would drop a keyboard user's focus
  // on the page itself: the message takes it, and a screen reader reads it. What is
  // hidden is known here; Element.checkVisibility() is missing before Safari 17.4.
  const focusHidden = (focused === elements.retry && retry === null)
    || elements.results.contains(focused);
  if (focusHidden) {
    elements.message.focus();
  }
  document.title = PAGE_TITLE; // no view is shown, so the tab names none
  setStatus('');
  setBusy(false); // the message is what is shown now, not a view loading
  skipTo(elements.message, 'Skip to the message');
}

/**
 * End the message with the seconds left until `retryAt`, updated each second. The count is
 * a timer (its implicit aria-live is off): a screen reader reads the alert once, not again
 * at every second.
 */
function countDown(retryAt) {
  const count = document.createElement('span');
  count.setAttribute('role', 'timer');
  const space = document.createTextNode(' ');
  elements.messageText.append(space, count);
  const mine = { nodes: [space, count], timer: null };
  countdown = mine;
  const tick = () => {
    const left = Math.max(0, retryAt - performance.now());
    const seconds = Math.ceil(left / 1000);
    count.textContent = seconds > 0 ? `Retry in ${plural(seconds, 'second')}.` : 'You can retry now.';
    // The next tick falls when the count changes, from the time left (timers run late).
    mine.timer = seconds > 0 ? setTimeout(tick, left - (seconds - 1) * 1000) : null;
  };
  tick();
}

/**
 * Stop the count of a message's wait and take it off the message: a new view or message
 * makes it stale, and a count left standing would read as frozen while the next view loads.
 */
export function stopCountdown() {
  if (countdown) {
    clearTimeout(countdown.timer);
    countdown.nodes.forEach((node) => node.remove());
    countdown = null;
  }
}

/**
 * Point the skip link at `target`, what the page shows below the controls. A link to
 * the hidden chart would lead nowhere: the message stands in its place, and so in the link's.
 */
function skipTo(target, text) {
  elements.skipLink.setAttribute('href', `#${target.id}`);
  elements.skipLink.textContent = text;
  elements.skipLink.hidden = false;
}

export function setStatus(text) {
  elements.status.replaceChildren(...withUnbrokenDates(text));
}

/**
 * Mark the results as being replaced; the messages and status around them stay live.
 * With no results on screen (the first view, or a message), the status is the only sign
 * of loading: it is shown to the eye too, until the view or a message replaces it.
 */
export function setBusy(busy) {
  elements.results.setAttribute('aria-busy', String(busy));
  elements.status.classList.toggle('visually-hidden', !(busy && elements.results.hidden));
}

/** Show the results area (before drawing, so the chart can measure its size). */
export function showResults(view) {
  stopCountdown();
  retryAction = null;
  // A keyboard user who pressed Retry would be left on a hidden button: go to the chart.
  const focusWasInMessage = elements.message.contains(document.activeElement);
  elements.message.hidden = true;
  elements.results.hidden = false;
  if (focusWasInMessage) {
    elements.chart.focus();
  }
  elements.chartTitle.replaceChildren(
    `${view.symbol}, `, unbroken(view.start), ' to ', unbroken(view.end));
  document.title = `${view.symbol} ${view.start} to ${view.end} · ${PAGE_TITLE}`;
  skipTo(elements.chart, 'Skip to the chart');
}

/** Show the statistics from /api/statistics and the number of trading days. */
export function renderStats(stats, tradingDays) {
  const shown = {
    trading_days: groupDigits(tradingDays),
    average_daily_open_price: stats.average_daily_open_price.toFixed(2),
    average_daily_close_price: stats.average_daily_close_price.toFixed(2),
    average_daily_volume: groupDigits(stats.average_daily_volume),
  };
  for (const cell of elements.stats.querySelectorAll('[data-stat]')) {
    cell.textContent = shown[cell.dataset.stat];
  }
}

/** Show one day's prices (exact, as the API wrote them) in the readout. */
export function renderReadout(row) {
  for (const cell of elements.readout.querySelectorAll('[data-field]')) {
    const value = row?.[cell.dataset.field];
    if (value == null) {
      cell.textContent = row ? 'unknown' : '';
    } else {
      cell.textContent = cell.dataset.field === 'volume' ? groupDigits(value) : value;
    }
  }
}
