// The page's entry: starts the dashboard, or says on the page that it could not start.
// It imports nothing, so a script that is missing or fails as the page starts (or a bug
// in its first view) ends in that sentence, not in "Loading symbols…" for ever.

const byId = (id) => document.getElementById(id);

/** Replace the controls and any view with a message saying why the page did not start. */
function showStartFailure(error) {
  console.error('The dashboard could not start:', error);
  const docs = document.createElement('a');
  docs.href = `${byId('dashboard').dataset.apiPrefix}/docs`;
  docs.textContent = 'the JSON API';
  byId('message-text').replaceChildren(
    `The dashboard could not start: its scripts failed to load or to run (${error}). `
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

import('./dashboard.js').then(({ start }) => start()).catch(showStartFailure);
