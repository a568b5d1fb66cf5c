"""A small, strict X12 reader and writer for the documents Sinew exchanges (810, 850, 855, 856)."""
