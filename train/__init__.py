"""deblur.train: networks, checkpoints, losses, blur synthesis, datasets, trainer and evaluation.

Importing this package is cheap and torch-free; the submodules that need torch import it themselves.
"""
