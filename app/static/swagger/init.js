// Starts Swagger UI on /api/docs from a file, not an inline script, so the
// page runs under the API's Content-Security-Policy (script-src 'self').
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
    showCommonExtensions: true
  });
});
