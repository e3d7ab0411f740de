"""Command-line front end of SimpleCNN (``simplecnn train | evaluate | compare | gradcheck``)."""
