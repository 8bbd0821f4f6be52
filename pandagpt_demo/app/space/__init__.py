"""Glue for Hugging Face Spaces: what the environment says, fetching the real weights while the tiny
model serves, and ZeroGPU's GPU calls. Only the server (and the runtime) import it."""
