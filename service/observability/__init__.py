"""Operating the service: structured JSON logs with request ids, and Prometheus metrics."""
