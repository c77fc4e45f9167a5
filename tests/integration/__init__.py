"""End-to-end tests on real BuildKit, a real Docker Engine, a real registry and real llama.cpp compiles."""
