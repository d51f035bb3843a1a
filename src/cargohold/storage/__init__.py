"""The store's root on disk, one concept a module:

- ``blobs``: committed blobs (paths, sizes, opening only regular files, reading documents
  re-hashed, iteration, commit, delete, verify);
- ``staged``: what staging hands back (``StagedBlob``) and the ``Sink`` protocol a blob's
  bytes go to (``HASH_ONLY`` writes nothing); ``ingest``: staging directories, the sink that
  writes them, the pack of small blobs; ``writers``: how staged bytes reach the disk (a
  background writer, the kernel's copy, large blobs staged alongside on another core);
- ``files``: file-system helpers (reserving blocks, writeback, ``open_regular``, fsync of
  directories, out-of-space errors, a parallel map);
- ``metadata``: image records, namespaces, holdings and leases in SQLite, over ``database``
  (opening the connection, SQLite's errors typed);
- ``leases``: lease liveness by file lock; ``gc``: mark-and-sweep collection;
- ``outputs``: where an exported archive goes.
"""
