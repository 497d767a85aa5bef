"""deblur.runtime."""
