"""llama-bake: a typed catalog of GGUF models compiled into a docker buildx bake graph."""
