"""Data collection: record labelled frames from a simulator into a dataset folder, read it back.

Recording (`record`, `writer`, `format`, `validate`) never imports torch, so it starts fast;
only the reader (`collect.dataset`) does.
"""
