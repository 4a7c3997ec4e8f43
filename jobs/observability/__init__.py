"""Pipeline metrics pushed to Prometheus; the rules, alerts and dashboards over them live in
the top-level observability/ folder."""
