"""Adapters behind the ports in agents/, settings and metrics."""
