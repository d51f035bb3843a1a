"""Archives: importing and exporting tars and OCI layout directories.

Reading, bottom up: ``tar`` (the strict header code, every override of the standard library's
``tarfile``), ``members`` (what an archive holds, from a tar, a stream or a layout directory,
and the checks on member names), ``contents`` (what a scan found: the content source the
archive's images are walked over), ``scan`` (the one pass over the members), ``plan`` (what an
import will commit and its naming rules), ``layout`` (OCI layout planning) and ``docker``
(docker archives). Writing: ``writer``. Both: ``compression``.
"""
