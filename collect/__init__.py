"""The dataset producers: record labelled frames from a simulator (`record`), import real
datasets (`importers`). The format they write, and its reader and validator, live in `dataset/`.

Nothing here imports torch, so a recording starts fast.
"""
