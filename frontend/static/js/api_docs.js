// Starts swagger-ui on /api/docs. A file of ours, not the inline script FastAPI's page uses: the
// page's Content-Security-Policy runs no inline code. SwaggerUIBundle comes from the installed
// package's copy (/api/docs/assets), never a CDN; validatorUrl null keeps it from calling out.
window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.openapiUrl,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
