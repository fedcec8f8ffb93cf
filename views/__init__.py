"""How views are made from images: the view settings and their random parameters, the batched and
the per-image renderers, decoding, the evaluation transforms, and which view path a run takes.

`datamodules/` decides which images (datasets, splits, samplers, caches); everything here turns those
images into the tensors the model sees.
"""
