"""Importers of real datasets (Cityscapes, TuSimple, CULane) into laneloop's dataset format.

    python -m collect.importers {cityscapes,culane,tusimple} ROOT --out DIR [--size HxW] ...

Each dataset is one module that knows only its layout and labels and offers itself through
a small adapter (`source.Source`) listed in `registry.SOURCES`; the rest is shared:

- `source`: `SourceFrame`, `SourceError`, the `Source` adapter;
- `pixels`: image decoding and resizing;
- `lanes`: what TuSimple and CULane share: lane polylines drawn as labels (`lane_mask`),
  --line-width and --split, the labels' description in the manifest;
- `convert`: `import_frames`, source frames -> one dataset folder, published atomically
  (`dataset.staging`);
- `cli`: the one command line (`main`), and `forward` for the old per-dataset commands.

Imported folders differ from recordings in three ways, all declared in the manifest:
`backend` is the dataset's name, `source` says where the frames came from and how their
labels were made (and maps each frame id to its source file), and `annotated_tags` lists the
tags the labels define, so that `LaneDataset` refuses a task the labels cannot score (the
lane task on Cityscapes). Index columns the dataset does not know (pose, speed, simulation
time, lane id) are null.

The Cityscapes id table stays at `collect/cityscapes_labels.py`, the path the manifests of
imported Cityscapes folders name; likewise `source.importer` keeps naming the old
`collect.import_<name>` commands (still working, see `cli.forward`), so that an import
writes byte for byte the folder it wrote before the importers were gathered here.
"""
