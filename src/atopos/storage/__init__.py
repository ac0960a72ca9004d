"""The storage port (`SecretStore`) and its adapters: SQLite (embedded default), Redis."""
