"""The ground layer: what every other layer uses (errors and checks, the config, small numeric
operations, the progress bar, atomic file writing, threads). Imports nothing of the engine."""
