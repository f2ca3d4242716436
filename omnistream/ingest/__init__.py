"""The collectors' own formats in: decode a message into samples, map them onto entities and
metric names, and assemble one point per entity per step."""
