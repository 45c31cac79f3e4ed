"""Stage 1, receive: the C-ECHO / C-STORE SCP. An instance is on disk and indexed before Success."""
