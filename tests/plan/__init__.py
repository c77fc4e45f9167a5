"""Tests of llama_bake.plan."""
