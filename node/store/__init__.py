"""Stage 2, store: received files under incoming/, the SQLite index (series, jobs, outbox), the audit log
and retention (the cleaner). Every other stage reads and writes its state here."""
