"""Export of the current ensemble to SavedModel and TFLite."""
