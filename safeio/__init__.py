"""File-safety helpers every layer may use: atomic writes, the restricted unpickler and
``torch.load`` wrapper, and the record of items excluded while reading."""
