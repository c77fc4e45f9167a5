"""Tests of llama_bake.buildx."""
