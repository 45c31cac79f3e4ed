"""Stage 5, dispatch: the outbox sent to each PACS by C-STORE, with backoff and dead letters."""
