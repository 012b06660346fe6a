// The public API, read as any client reads it: JSON envelopes, pages followed to the end.

const TIMEOUT_SECONDS = 20;
const PAGE_LIMIT = 1000; // the API's largest page

/**
 * The API answered with an error status; `message` is its info.error, `retryAfter`
 * the seconds its Retry-After header asks to wait (null without one in seconds).
 */
export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function retryAfterSeconds(response) {
  const value = response.headers.get('Retry-After');
  return /^\d+$/.test(value ?? '') ? Number(value) : null;
}

/** The API could not be reached, or did not answer in time. */
export class OfflineError extends Error {}

/** Return a client of the API mounted at `prefix` (e.g. "/api"). */
export function createApi(prefix) {
  /** GET `path`'s JSON body; `revalidate` asks the server even if the browser's copy is fresh. */
  async function getJson(path, params, revalidate = false) {
    const url = `${prefix}${path}?${new URLSearchParams(params)}`;
    let response;
    try {
      response = await fetch(url, {
        headers: { Accept: 'application/json' },
        cache: revalidate ? 'no-cache' : 'default',
        signal: AbortSignal.timeout(TIMEOUT_SECONDS * 1000),
      });
    } catch (error) {
      throw new OfflineError(error.name === 'TimeoutError'
        ? `it did not answer within ${TIMEOUT_SECONDS} seconds`
        : 'the network request failed');
    }
    const body = await response.json().catch(() => null);
    if (!response.ok || body === null) {
      const reason = body?.info?.error || response.statusText || 'the answer is not JSON';
      throw new ApiError(response.status, reason, retryAfterSeconds(response));
    }
    return body;
  }

  /** Return the rows of every page of `path`, given its first page. */
  async function allRows(path, params, firstPage, revalidate = false) {
    const { pages } = firstPage.pagination;
    const rest = [];
    for (let page = 2; page <= pages; page += 1) {
      rest.push(getJson(path, { ...params, limit: PAGE_LIMIT, page }, revalidate));
    }
    const bodies = await Promise.all(rest);
    return firstPage.data.concat(...bodies.map((body) => body.data));
  }

  function priceParams({ symbol, start, end }) {
    return { symbol, start_date: start, end_date: end, fields: 'all' };
  }

  return {
    /**
     * Every stored symbol with its freshness, ordered by symbol. With `revalidate` (a retry),
     * not the browser's copy of an earlier answer, which may be fresh for HTTP_CACHE_MAX_AGE.
     */
    async symbols(revalidate = false) {
      const first = await getJson('/symbols', { limit: PAGE_LIMIT, page: 1 }, revalidate);
      return allRows('/symbols', {}, first, revalidate);
    },

    /** The first page of a view's prices, every field; its pagination holds the count. */
    firstPricePage(view) {
      return getJson('/financial_data', { ...priceParams(view), limit: PAGE_LIMIT, page: 1 });
    },

    /** Every price row of a view, oldest first, given its first page. */
    allPrices(view, firstPage) {
      return allRows('/financial_data', priceParams(view), firstPage);
    },

    /** The averages of a view's range, from /statistics. */
    async statistics({ symbol, start, end }) {
      const body = await getJson('/statistics', { symbol, start_date: start, end_date: end });
      return body.data;
    },
  };
}
