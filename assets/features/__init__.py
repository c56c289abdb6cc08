"""Pure feature builders: raw daily flights/weather frames -> model-ready features."""
