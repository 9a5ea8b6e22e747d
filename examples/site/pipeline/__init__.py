"""The example site's stages: pages, index and stats."""
