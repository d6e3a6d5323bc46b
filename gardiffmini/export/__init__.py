"""The trained try-on model, shipped and exported for the book's "Try it" page.

- :mod:`~gardiffmini.export.weights`: a trained :class:`~gardiffmini.pipeline.GarDiffPipeline`
  as safetensors and a JSON record in ``gardiffmini/weights/`` (``tools/ship_tryon.py``
  writes them), and back.
- :mod:`~gardiffmini.export.graphs`: the pipeline's guided noise prediction and its decoder
  with paste-back as ONNX graphs, the DDIM step as diffusers' scheduler computes it, and
  the page's sampling loop in onnxruntime for Python (what the tests compare with PyTorch).
- :mod:`~gardiffmini.export.page`: the gallery's conditioning and every asset of the page
  (``tools/build_book.py`` calls :func:`~gardiffmini.export.page.write_page_assets`).
"""
