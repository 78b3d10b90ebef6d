"""The dataset layer: laneloop's one on-disk dataset format, and reading, checking and writing it.

Every producer writes this format and every consumer reads it, so it has one home apart
from both: `collect/` (recording from a simulator, importing real datasets) only produces
folders, `train/` and `quant/` only consume them.

- `format`: the folder layout, manifest, index schema and PNG coding (DESIGN.md "Dataset");
- `writer`: `DatasetWriter`, frame by frame and resumable (recordings);
- `staging`: a whole dataset built aside and moved into place at once (imports);
- `stats`: frames per split, pixels per tag, the summary a recording prints;
- `validate`: `python -m dataset.validate DIR`, manifest vs index vs files;
- `preview`: `python -m dataset.preview DIR`, a contact sheet;
- `reader`: `LaneDataset`, the torch `Dataset` training and evaluation read, and
  `dataset_for` (a split as a checkpoint's model expects it).

Only `reader` imports torch: recording and validating must not pay its import time.
"""
