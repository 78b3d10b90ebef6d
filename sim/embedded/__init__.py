"""The embedded simulator: procedural towns, traffic and a CPU renderer (the default backend)."""
