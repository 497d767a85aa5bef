"""deblur.export."""
