"""Measuring a segmented OCT volume as graders do: layer thickness per A-scan (`thickness`) and the ETDRS
grid's sector means around the fovea (`etdrs`)."""
