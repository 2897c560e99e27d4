"""The embedded demo model: synthetic phantom chest X-rays, training and evaluation."""
