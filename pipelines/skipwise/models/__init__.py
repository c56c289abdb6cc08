"""Model assets: every trained version kept under its fingerprint and which one is promoted
(`registry`), and whether a model's training data changed enough to retrain (`retraining`).

Imports the engine and the layers below it.
"""
