"""Reports people read: figure helpers, the table and image trust reports, the augment report,
and the datasheets (Markdown)."""
