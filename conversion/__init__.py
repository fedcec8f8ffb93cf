"""`shards.py convert`: an image folder as sharded, streamable JPEG bytes (LitData's format)."""
