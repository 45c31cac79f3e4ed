"""Backfill: an archive's old studies through the same routes and modules as a scanner's (`cmr-node backfill`)."""
