"""Models: garment encoders, the try-on UNet, the garment-focused adapter and its attention."""
