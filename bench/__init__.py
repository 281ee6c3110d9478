"""Benchmarks of the KAS key-manager host against the raw cryptographic limit (`make bench`)."""
