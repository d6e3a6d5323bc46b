"""Data: the ToyVITON generator, the VITON-HD loader and the TPS warp."""
