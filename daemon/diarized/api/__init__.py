"""`diarized api`: everything of diarized that touches the network, in its own process.

The HTTP API (app.py), bearer tokens (auth.py), webhook delivery
(webhooks.py) and /metrics (metrics.py). It reads and writes the same job
store as the daemon and puts uploads through the same intake; it never
loads a model, and the daemon never opens a socket.
"""
