// The price chart: candlesticks (a close line for days whose high and low are unknown)
// with volume in a pane below, a crosshair readout, and arrow keys to move through the days.

import {
  CandlestickSeries, CrosshairMode, HistogramSeries, LineSeries, createChart,
} from '../vendor/lightweight-charts/lightweight-charts.standalone.production.mjs';
import { groupDigits, plural } from './view.js';

// Exported for the browser tests, which look for these colours in the canvas.
export const COLORS = {
  up: '#00796b',
  down: '#c62828',
  line: '#1d4ed8',
  upVolume: 'rgba(0, 121, 107, 0.45)',
  downVolume: 'rgba(198, 40, 40, 0.45)',
  text: '#1f2328',
  grid: '#eef0f3',
};
// The labels' size against the page's root font size: 12 px under the usual 16 px.
const LABEL_FONT_SCALE = 0.75;
const VOLUME_PANE_SHARE = 0.28;
const MIN_BAR_SPACING = 0.001; // px: 100 years of days fit 30 px
// px: about what a month of days gets on a desktop. Fewer days keep this width, drawn from the
// right edge, instead of the library's half the chart (one day would be a candle 300 px wide).
const MAX_BAR_SPACING = 40;
const KEY_STEPS = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1 }; // a slider's keys
const PRICE_FIELDS = ['open_price', 'high_price', 'low_price', 'close_price'];
const MIN_PRICE_DECIMALS = 2;
const SIGNIFICANT_DIGITS = 3; // of the lowest price, on the price scale and its labels

function hasRange(row) {
  return row.high_price != null && row.low_price != null; // null or absent: unknown
}

function candle(row) {
  if (!hasRange(row)) {
    return { time: row.date }; // whitespace: the line series draws this day
  }
  return {
    time: row.date,
    open: Number(row.open_price),
    high: Number(row.high_price),
    low: Number(row.low_price),
    close: Number(row.close_price),
  };
}

function linePoint(row) {
  return hasRange(row) ? { time: row.date } : { time: row.date, value: Number(row.close_price) };
}

/**
 * The volume axis from the chart's own range, starting at 0: a view whose every volume is 0
 * (a halted stock) gets 0 to 1, where the library would label it -0.05 to 0.05.
 */
export function volumeAxis(auto) {
  if (auto === null) {
    return null;
  }
  const top = auto.priceRange.maxValue;
  return { ...auto, priceRange: { minValue: 0, maxValue: top > 0 ? top : 1 } };
}

function volumeBar(row) {
  const rising = Number(row.close_price) >= Number(row.open_price);
  return {
    time: row.date,
    value: Number(row.volume),
    color: rising ? COLORS.upVolume : COLORS.downVolume,
  };
}

/**
 * The price scale's format for `rows`: enough decimals for 3 significant digits of the lowest
 * price (a price of 0.0258 reads 0.0258, not 0.03), never more than the API wrote, at least 2.
 */
function priceFormat(rows) {
  let written = MIN_PRICE_DECIMALS;
  let lowest = Infinity;
  for (const row of rows) {
    for (const text of PRICE_FIELDS.map((field) => row[field]).filter((value) => value != null)) {
      written = Math.max(written, (text.split('.')[1] ?? '').length);
      lowest = Math.min(lowest, Number(text));
    }
  }
  const needed = lowest > 0 ? SIGNIFICANT_DIGITS - 1 - Math.floor(Math.log10(lowest)) : written;
  const precision = Math.max(MIN_PRICE_DECIMALS, Math.min(written, needed));
  // JavaScript's ** is approximate: an engine may make 10 ** -4 0.00009999999999999999
  // (Node 20's does), and the library then labels 0.0258 "0.9994". 1 / 10 ** n is exact.
  return { type: 'price', precision, minMove: 1 / 10 ** precision };
}

/**
 * The labels' font size in px, from the page's root font size: a reader's larger default font
 * (a browser setting, unlike zoom, which the canvas follows by itself) makes them larger too.
 */
function labelFontSize() {
  return LABEL_FONT_SCALE * parseFloat(getComputedStyle(document.documentElement).fontSize);
}

/** Say one day's prices, as the chart's value: the readout's numbers with their names. */
function spokenDay(row) {
  const price = (value) => value ?? 'unknown';
  return `${row.date}: open ${row.open_price}, high ${price(row.high_price)}, `
    + `low ${price(row.low_price)}, close ${row.close_price}, volume ${groupDigits(row.volume)}`;
}

/** Describe what the chart draws, for screen readers (and anyone reading the label). */
function describe(rows, symbol) {
  const unknown = rows.filter((row) => !hasRange(row)).length;
  const range = `${symbol}, ${rows[0].date} to ${rows[rows.length - 1].date}, ${plural(rows.length, 'trading day')}`;
  if (unknown === 0) {
    return `Candlestick chart of ${range}, with daily volume below`;
  }
  if (unknown === rows.length) {
    return `Line chart of the closing prices of ${range} (high and low unknown), with daily volume below`;
  }
  return `Candlestick chart of ${range}, with a closing-price line for the ${plural(unknown, 'day')}`
    + ' whose high and low are unknown, and daily volume below';
}

export class PriceChart {
  /** Draw into `container`; `onDay(row)` gets the day under the crosshair (or the last day). */
  constructor(container, onDay) {
    this.container = container;
    this.onDay = onDay;
    this.rows = [];
    this.chart = createChart(container, {
      autoSize: true,
      // The attribution (and its link) is in the page footer: the logo would inject an inline style.
      layout: { attributionLogo: false, textColor: COLORS.text },
      grid: { vertLines: { color: COLORS.grid }, horzLines: { color: COLORS.grid } },
      crosshair: { mode: CrosshairMode.Normal },
      // A finger dragged up or down on the chart scrolls the page, as anywhere else: on a phone
      // the chart fills half the screen, and the library's default would pan its prices instead.
      handleScroll: { vertTouchDrag: false },
      // The crosshair's time label writes the day as the readout does; the axis keeps its short
      // ticks (Dec, 8, 15, 2023), which a 10-character date would space far apart.
      localization: { locale: 'en-US', dateFormat: 'yyyy-MM-dd' },
      // The library's least bar spacing (0.5 px) would fit only ~2 years of days on a
      // phone: a range of decades must still fit the width, however thin its bars.
      // Both edges fixed: the view's days are all there is, so no scrolling or zooming out past
      // its first or last day, and the library draws a label at an edge (Dec on a range from
      // Dec 1) inside the axis rather than centred on its day and cut. A few days, narrower
      // than the chart, still stand at the right edge: the library applies that fix last.
      // A resize keeps the days in view: a narrower window (a phone turned upright) would
      // otherwise keep the bars' spacing and push the first days out at the left.
      timeScale: {
        borderVisible: false, minBarSpacing: MIN_BAR_SPACING, maxBarSpacing: MAX_BAR_SPACING,
        fixLeftEdge: true, fixRightEdge: true, lockVisibleTimeRangeOnResize: true,
      },
      // A label that would straddle a pane's edge (the lowest price, where the volume pane
      // begins, on a view of a few days) is left out rather than drawn cut in half.
      rightPriceScale: { borderVisible: false, entireTextOnly: true },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: COLORS.up,
      downColor: COLORS.down,
      wickUpColor: COLORS.up,
      wickDownColor: COLORS.down,
      borderVisible: false,
    });
    this.line = this.chart.addSeries(LineSeries, {
      color: COLORS.line,
      lineWidth: 2,
      pointMarkersVisible: true,
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceFormat: { type: 'volume' },
      autoscaleInfoProvider: (original) => volumeAxis(original()),
      lastValueVisible: false,
      priceLineVisible: false,
    }, 1);
    const [pricePane, volumePane] = this.chart.panes();
    pricePane.setStretchFactor(1 - VOLUME_PANE_SHARE);
    volumePane.setStretchFactor(VOLUME_PANE_SHARE);

    this.chart.subscribeCrosshairMove((param) => this.onDay(this.rowAt(param.logical)));
    container.addEventListener('keydown', (event) => this.onKey(event));
    container.addEventListener('blur', () => this.chart.clearCrosshairPosition());
  }

  /** Draw `rows` (the API's rows, oldest first, every field) of `symbol`. */
  show(rows, symbol) {
    this.rows = rows;
    this.focused = rows.length - 1;
    // Read with each view: no event tells of a changed default font size, so the next view
    // (or a reload) follows it, as the rest of the page does at once.
    this.chart.applyOptions({ layout: { fontSize: labelFontSize() } });
    const priceScale = { priceFormat: priceFormat(rows) };
    this.candles.applyOptions(priceScale);
    // The last close's tag and line come from the series that draws the last day: the line's
    // when its high and low are unknown (the candles have none then), else the candles'.
    const lastOnLine = !hasRange(rows[rows.length - 1]);
    this.line.applyOptions({
      ...priceScale, lastValueVisible: lastOnLine, priceLineVisible: lastOnLine,
    });
    this.candles.setData(rows.map(candle));
    this.line.setData(rows.map(linePoint));
    this.volume.setData(rows.map(volumeBar));
    this.chart.timeScale().fitContent();
    this.container.setAttribute('aria-label', describe(rows, symbol));
    this.container.setAttribute('aria-valuemax', String(rows.length));
    // A crosshair left by the arrow keys (a view shown while the chart keeps the focus, as on
    // Back) would stand over another day of the new view and put that day in the readout.
    this.chart.clearCrosshairPosition();
    this.choose(this.focused);
  }

  /**
   * Make the day at `index` the chart's value. The chart is a slider to screen readers
   * (an image would leave its arrow keys to them): they say the value text at each key.
   */
  choose(index) {
    this.focused = index;
    const row = this.rows[index];
    this.container.setAttribute('aria-valuenow', String(index + 1));
    this.container.setAttribute('aria-valuetext', spokenDay(row));
    this.onDay(row);
  }

  /**
   * Return the row at a logical index of the time scale. Off the days (the pointer gone, or on
   * the empty space left of a short range's first day) it is the focused row, as ever: the
   * nearest day would pass for the one pointed at.
   */
  rowAt(logical) {
    const onDay = Number.isInteger(logical) && logical >= 0 && logical < this.rows.length;
    return this.rows[onDay ? logical : this.focused];
  }

  onKey(event) {
    const last = this.rows.length - 1;
    let index;
    if (event.key in KEY_STEPS) {
      index = Math.min(Math.max(this.focused + KEY_STEPS[event.key], 0), last);
    } else if (event.key === 'Home' || event.key === 'End') {
      index = event.key === 'Home' ? 0 : last;
    } else {
      return;
    }
    event.preventDefault();
    this.bringIntoView(index);
    const row = this.rows[index];
    const series = hasRange(row) ? this.candles : this.line;
    this.chart.setCrosshairPosition(Number(row.close_price), row.date, series);
    this.choose(index);
  }

  /**
   * Scroll a zoomed-in chart so the day at `index` stands whole in it: the crosshair cannot
   * stand off the chart, and its label would name the day at the edge, not the readout's.
   */
  bringIntoView(index) {
    const timeScale = this.chart.timeScale();
    const visible = timeScale.getVisibleLogicalRange();
    if (visible === null) {
      return;
    }
    const width = visible.to - visible.from;
    if (index - 0.5 < visible.from) {
      timeScale.setVisibleLogicalRange({ from: index - 0.5, to: index - 0.5 + width });
    } else if (index + 0.5 > visible.to) {
      timeScale.setVisibleLogicalRange({ from: index + 0.5 - width, to: index + 0.5 });
    }
  }
}
