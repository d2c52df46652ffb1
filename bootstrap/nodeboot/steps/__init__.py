"""The join / reset / proxy workflows, per OS, as lists of phases."""
