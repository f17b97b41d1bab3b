"""See docs/ and ARCHITECTURE."""
