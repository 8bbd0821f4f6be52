"""Glue for Hugging Face Spaces: what the environment says, fetching the real weights while the tiny
model serves, and ZeroGPU's GPU calls. Only the server imports it; it builds on the runtime's `ModelHandle`."""
