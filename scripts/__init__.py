"""Deployment helpers run inside the container (entrypoint, health check)."""
