"""Tests of llama_bake.render."""
