"""Models trained on the skipwise flight/weather feature tables."""
