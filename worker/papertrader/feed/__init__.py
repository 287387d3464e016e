"""The WebSocket feed."""
