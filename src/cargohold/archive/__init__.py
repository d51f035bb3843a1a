"""Archives: reading tars (the strict header code), sources and compression, OCI layout and docker
planning, and writing archives.
"""
