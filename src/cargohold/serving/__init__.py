"""The store served as a read-only OCI registry (``cargohold serve``).

The server answers the OCI Distribution API's read requests from the store's own files: a
manifest is the stored document, a blob is sent from its file under ``content/blobs`` with
``sendfile``. Nothing is copied, and the store stays usable while it is served (each request
reads the metadata as it is then).

  names.py      the repository a request means (``?ns=HOST``, Docker Hub's short names)
  content.py    ServedStore: manifests, blobs, tags and the catalog of one namespace
  ranges.py     the Range header, and the response that sends a blob's bytes from its file
  pacing.py     no kernel pacing (BBR without fq) on connections from this machine
  auth.py       htpasswd (bcrypt) basic authentication
  app.py        the aiohttp application: routes, the spec's error bodies, read-only
  server.py     ServeConfig and run(): sockets, TLS, the access log, signals
"""
