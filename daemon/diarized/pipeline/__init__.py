"""Audio and text work, one module per stage; nothing here knows about SQLite or folders."""
