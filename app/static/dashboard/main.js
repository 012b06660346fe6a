// The page's entry: starts the dashboard, or says on the page that it could not start.
// It imports nothing, so a script that is missing or fails as the page starts (or a bug
// in its first view) ends in that sentence, not in "Loading symbols…" for ever. Until the
// dashboard's modules have loaded, the stylesheet's delayed message covers main.js itself.

const byId = (id) => document.getElementById(id);

/**
 * The error in words, without the address it names: a module that dashboard.js imports
 * and that fails to load is reported as dashboard.js failing, so the address misleads.
 * The console keeps the whole error, and the failed request names the real file.
 */
function describe(error) {
  return String(error).replace(/:?\s*\b[a-z][a-z\d+.-]*:\/\/\S+/gi, '');
}

/** Replace the controls and any view with a message saying why the page did not start. */
function showStartFailure(error) {
  console.error('The dashboard could not start:', error);
  const docs = document.createElement('a');
  docs.href = `${byId('dashboard').dataset.apiPrefix}/docs`;
  docs.textContent = 'the JSON API';
  byId('message-text').replaceChildren(
    `The dashboard could not start: its scripts failed to load or to run (${describe(error)}). `
      + 'Reload the page to try again. The prices can also be read from ',
    docs,
    '.',
  );
  for (const id of ['skip-link', 'controls', 'freshness', 'results', 'retry']) {
    byId(id).hidden = true;
  }
  byId('status').textContent = '';
  byId('message').hidden = false;
}

/** Tell the stylesheet the scripts have loaded: its "has not started" message is not needed. */
function markStarted() {
  document.documentElement.classList.add('started');
}

import('./dashboard.js')
  .then(({ start }) => {
    markStarted();
    return start();
  })
  .catch((error) => {
    markStarted();
    showStartFailure(error);
  });
