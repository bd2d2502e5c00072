"""Remote chat platforms, one module per channel type (see ``..adapters``)."""
