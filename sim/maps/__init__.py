"""Road networks from OpenDRIVE files (.xodr): read, convert to the embedded world, write."""
