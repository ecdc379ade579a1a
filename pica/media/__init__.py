"""Uploaded files (docs/protocol.md, "Files"): their bytes in blob storage (a directory, or S3), uploads simple and
resumable, downloads with ranges, images' thumbnails, and the housekeeping of what nothing references. The rules of
who may read what and how a message names a file live in the store (pica/store/media.py) and the core
(pica/core/files.py); this package is the I/O around them."""
