"""Output tables: layout, files and footers, the typed manifest, leases and the commit."""
