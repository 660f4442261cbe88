"""Shared helpers for the numbered scripts: paths, config, atomic files, logging, tokenizers."""
