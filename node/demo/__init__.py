"""The demo: phantom studies pushed through a running node to a local PACS (Orthanc or a folder SCP)."""
