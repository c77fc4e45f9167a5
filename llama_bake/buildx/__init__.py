"""The outside: docker buildx, the Docker Engine and buildkitd, and everything a build reports."""
