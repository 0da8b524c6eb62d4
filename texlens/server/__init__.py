"""texlens serve: the HTTP API (app.py), dynamic batching (batcher.py), the web page (static/)."""
