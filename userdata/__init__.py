"""Node user-data: real shell and unit files under files/, rendered from one place (render.py)."""
