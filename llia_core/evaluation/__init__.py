"""Evaluation of a trained model on held-out identities (see ``evaluate``) and pixel metrics."""
