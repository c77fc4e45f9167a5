"""Tests of llama_bake.cli."""
