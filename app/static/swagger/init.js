// Starts Swagger UI on /api/docs from a file, not an inline script, so the
// page runs under the API's Content-Security-Policy (script-src 'self').

// Swagger UI offers a "Download file" link only for a body it holds as a
// Blob, and it reads a text/csv body as text: the CSV export's body would
// show in the page, never as the file it is. An answer sent as an
// attachment is handed over as a Blob, so "Try it out" offers the download
// under the name in Content-Disposition (financial_data.csv).
function attachmentAsBlob(response) {
  var headers = response.headers || {};
  var disposition = headers['content-disposition'] || '';
  if (window.Blob && /^\s*attachment/i.test(disposition) && typeof response.data === 'string') {
    response.data = new Blob([response.data], { type: headers['content-type'] || 'text/plain' });
  }
  return response;
}

window.addEventListener('load', function () {
  var root = document.getElementById('swagger-ui');
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: '#swagger-ui',
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset.slice(1)],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    docExpansion: root.dataset.docExpansion,
    // Show each parameter's bounds and pattern (minimum, maximum, pattern).
    showCommonExtensions: true,
    responseInterceptor: attachmentAsBlob
  });
});
