"""Tests of llama_bake.catalog."""
