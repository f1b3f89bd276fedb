"""Small shared utilities (drawing helpers for the visualisation tools: :mod:`.vis`)."""
