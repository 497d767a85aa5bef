"""deblur.video."""
