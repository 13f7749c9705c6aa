"""Storage: the engine (SQLite or PostgreSQL), the tables, the batch writes, the review queries and the migrations."""
