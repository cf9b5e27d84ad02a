"""Models: the catalog (what exists), fetch (getting files ready), manager (what is in memory)."""
