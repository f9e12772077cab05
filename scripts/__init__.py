"""Developer and CI scripts; a package so that tests and scripts can import each other (scripts.recordresources)."""
