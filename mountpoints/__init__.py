"""The FUSE view of csfs: maps mount paths to core objects and serves them. No lifecycle or format logic."""
