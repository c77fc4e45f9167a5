"""Rendering: the one Jinja environment, and the plan as the bake file, Dockerfiles, Compose, CI and graph."""
