"""`vmfleet serve`: Prometheus metrics, the JSON API (with OpenAPI) and the live dashboard.

Above the engine, beside the CLI: `service` (the fleet context, watchers and actions),
`metrics` (the prometheus_client collector), `api` and `models` (JSON routes and shapes),
`dashboard` (Jinja2 page, htmx fragments, SSE), `auth` (the token), `app` (the FastAPI
application and uvicorn).
"""
