"""Property-based parity suite: every scratch layer, the loss, Adam and the whole network vs PyTorch."""
