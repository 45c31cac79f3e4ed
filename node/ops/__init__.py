"""Operating the node: logging set-up and the monitoring endpoint (/healthz, /metrics)."""
